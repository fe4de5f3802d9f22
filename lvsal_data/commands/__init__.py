"""The command layer: the ``lvsal`` subcommands, which orchestrate collecting (``lvsal_data``) and
analysis (``analysis``) and sit above both (inseq's ``commands/``). Each subcommand is a
:class:`~lvsal_data.commands.options.Command`: a typed config dataclass, from which its options
are built, and the function that runs it. The command modules import no torch at import time,
so ``lvsal --help`` is quick.

The Python API of the commands: :func:`verify` (with a ``VerifyConfig``), :func:`fit_detectors`,
:func:`calibrate_to_file`, :func:`run_demo` (with a ``DemoConfig``).
"""

from __future__ import annotations

from ..registry import Registry
from . import calibrate, collect, demo, fit_detector, publish, verification
from .calibrate import CalibrateConfig, calibrate_to_file
from .demo import DemoConfig, run_demo
from .fit_detector import FitDetectorConfig, fit_detectors
from .options import Command
from .publish import PublishConfig
from .verification import VerifyConfig, VerifyResult, verify

#: name -> :class:`Command`; a plugin may register more.
COMMANDS: Registry[Command] = Registry("command")
for _module in (demo, collect, fit_detector, calibrate, verification, publish):
    COMMANDS.register(_module.COMMAND.name)(_module.COMMAND)

__all__ = ["COMMANDS", "CalibrateConfig", "Command", "DemoConfig", "FitDetectorConfig", "PublishConfig",
           "VerifyConfig", "VerifyResult", "calibrate_to_file", "fit_detectors", "run_demo", "verify"]
