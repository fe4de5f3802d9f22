"""Model loading and span finding on the real token layout, through a real processor."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from lvsal_data import find_spans, load_lvlm, trace_generate
from lvsal_data.errors import InputError, UnsupportedModelError
from lvsal_data.families import family_of
from lvsal_data.models import parse_device
from lvsal_data.testing import BUILDERS, VOCAB, TinyLVLM, tiny_llava, tiny_llava_processor
from lvsal_data.tiny_processors import PROCESSORS

WORDS = "Please describe this image in detail . a dog cat on the".split()


@pytest.fixture(scope="module")
def saved_llava(tmp_path_factory: pytest.TempPathFactory):
    folder = tmp_path_factory.mktemp("tiny-llava")
    tiny = tiny_llava()
    tiny.model.config.image_token_index = 7  # the processor's <image> id
    tiny.model.save_pretrained(folder)
    tiny_llava_processor(WORDS).save_pretrained(folder)
    return folder


def test_load_prepare_and_trace(saved_llava) -> None:
    lvlm = load_lvlm(str(saved_llava), device="cpu")
    assert lvlm.model.config.get_text_config()._attn_implementation == "eager"
    assert not lvlm.model.training
    prepared = lvlm.prepare(Image.new("RGB", (50, 40), "red"), "Please describe this image in detail.")
    ids = prepared.inputs["input_ids"][0].tolist()
    tok = lvlm.tokenizer
    # USER : <image>x4 Please describe this image in detail . ASSISTANT :
    assert prepared.text.startswith("USER: <image>") and prepared.text.endswith("ASSISTANT:")
    assert prepared.spans.system == (0, 2)
    assert prepared.spans.image == (2, 6) and ids[2:6] == [7] * 4
    assert prepared.spans.instruction == (6, len(ids))
    assert tok.decode(ids[6:]).startswith("Please")
    trace = trace_generate(lvlm.model, prepared.inputs, prepared.spans, max_new_tokens=3, eos_token_ids=[])
    assert len(trace.tokens) == 3


def test_dtype_is_applied(saved_llava) -> None:
    lvlm = load_lvlm(str(saved_llava), device="cpu", dtype="bfloat16")
    assert lvlm.dtype == torch.bfloat16
    prepared = lvlm.prepare(Image.new("RGB", (30, 30)), "Please describe this image .")
    assert prepared.inputs["pixel_values"].dtype == torch.bfloat16
    trace = trace_generate(lvlm.model, prepared.inputs, prepared.spans, max_new_tokens=2, eos_token_ids=[])
    assert all(t.summary.saliency >= 0 for t in trace.tokens)


def test_unknown_dtype(saved_llava) -> None:
    with pytest.raises(InputError, match="unknown dtype"):
        load_lvlm(str(saved_llava), device="cpu", dtype="float8")


def test_spans_of_each_family(tiny: TinyLVLM) -> None:
    inputs, spans = tiny.inputs(n_answer=3)
    found = find_spans(inputs["input_ids"], tiny.model.config, spans.answer_start)
    assert found == spans


def test_qwen2_vl_markers_belong_to_the_image(tiny_models: dict[str, TinyLVLM]) -> None:
    cfg = tiny_models["qwen2_vl"].model.config
    img = cfg.image_token_id
    ids = torch.tensor([[5, 6, cfg.vision_start_token_id, img, img, cfg.vision_end_token_id, 9, 10]])
    spans = find_spans(ids, cfg)
    assert spans.image == (2, 6) and spans.system == (0, 2) and spans.instruction == (6, 8)


def test_prompt_without_image_is_refused(tiny_models: dict[str, TinyLVLM]) -> None:
    with pytest.raises(InputError, match="no image token"):
        find_spans(torch.tensor([[3, 4, 5]]), tiny_models["llava"].model.config)


def test_unknown_family_lists_supported() -> None:
    from transformers import LlamaConfig

    with pytest.raises(UnsupportedModelError, match="supported: .*llava.*qwen2_vl"):
        family_of(LlamaConfig(vocab_size=VOCAB))


def test_a_device_this_machine_lacks_is_refused_in_one_line() -> None:
    assert parse_device("cpu") == torch.device("cpu")
    missing = f"cuda:{torch.cuda.device_count()}"  # one past the last GPU, whatever the machine has
    with pytest.raises(InputError, match="CUDA device"):
        parse_device(missing)
    with pytest.raises(InputError, match="unknown device"):
        parse_device("tpu0")


def test_image_markers_by_token_string_belong_to_the_image(tiny_models: dict[str, TinyLVLM]) -> None:
    """Regression: InternVL wraps its image run in <img> ... </img>, which are no config
    attributes; they were left out of the image span, so </img> became the first Eq. 6 column."""
    from tokenizers import Tokenizer, models

    from lvsal_data.models import image_marker_ids
    from transformers import PreTrainedTokenizerFast

    cfg = tiny_models["internvl"].model.config
    img = cfg.image_token_id
    vocab = {f"w{i}": i for i in range(img)} | {"<IMG_CONTEXT>": img, "<img>": img + 1, "</img>": img + 2}
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=Tokenizer(models.WordLevel(vocab, unk_token="w0")))
    markers = image_marker_ids(cfg, tokenizer)
    assert markers == {img + 1, img + 2}
    ids = torch.tensor([[5, 6, img + 1, img, img, img, img + 2, 9, 10]])
    spans = find_spans(ids, cfg, markers=markers)
    assert spans.system == (0, 2) and spans.image == (2, 7) and spans.instruction == (7, 9)
    assert find_spans(ids, cfg).image == (3, 6)  # without the tokenizer the markers are unknown


def test_system_prompt_is_the_family_standard_and_can_be_changed(saved_llava) -> None:
    """LLaVA-1.5 is evaluated with Vicuna's system prompt (the paper's Sys_L = 35 tokens): it is the
    LLaVA family's default; 'none' and any text replace it; the organism's default is none."""
    from lvsal_data.prompts import VICUNA_SYSTEM_PROMPT, resolve_system_prompt

    lvlm = load_lvlm(str(saved_llava), device="cpu")
    assert lvlm.standard_system_prompt == VICUNA_SYSTEM_PROMPT
    image = Image.new("RGB", (30, 30))
    plain = lvlm.prepare(image, "Please describe this image in detail.")
    system = resolve_system_prompt(None, lvlm.standard_system_prompt)
    with_system = lvlm.prepare(image, "Please describe this image in detail.", system)
    assert with_system.text == f"{VICUNA_SYSTEM_PROMPT} {plain.text}"
    n_system = len(lvlm.tokenizer(VICUNA_SYSTEM_PROMPT, add_special_tokens=False)["input_ids"])
    assert with_system.spans.system[1] == plain.spans.system[1] + n_system
    assert resolve_system_prompt("none", VICUNA_SYSTEM_PROMPT) is None
    assert load_lvlm("organism", device="cpu").standard_system_prompt is None


def test_a_template_that_drops_the_system_message_is_refused(saved_llava) -> None:
    lvlm = load_lvlm(str(saved_llava), device="cpu")
    lvlm.processor.chat_template = ("{% for m in messages %}{% if m['role'] == 'user' %}USER: <image>\n{% endif %}"
                                    "{% endfor %}ASSISTANT:")
    with pytest.raises(UnsupportedModelError, match="drops system messages; pass --system-prompt none"):
        lvlm.chat_prompt("Describe it.", "Be brief.")


#: The video processor each family's full processor saves (it needs torchvision to load).
VIDEO_PROCESSORS = {"qwen2_vl": "Qwen2VLVideoProcessor", "internvl": "InternVLVideoProcessor",
                    "smolvlm": "SmolVLMVideoProcessor", "qwen2_5_vl": "Qwen2VLVideoProcessor",
                    "qwen3_vl": "Qwen3VLVideoProcessor"}


@pytest.fixture(scope="module", params=sorted(VIDEO_PROCESSORS))
def saved_with_video(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    """A tiny model saved with its processor, whose config names a video processor as a full
    save_pretrained writes it (built here without one: constructing it needs torchvision)."""
    import json

    family = request.param
    if family == "smolvlm":
        pytest.importorskip("num2words", reason="SmolVLM's processor needs num2words (a dependency: make install)")
    folder = tmp_path_factory.mktemp(f"tiny-{family}")
    BUILDERS[family]().model.save_pretrained(folder)
    processor = PROCESSORS[family](WORDS)  # the image-only one: constructing the full one needs torchvision
    processor.save_pretrained(folder)
    config = json.loads((folder / "processor_config.json").read_text())
    config["video_processor"] = {"video_processor_type": VIDEO_PROCESSORS[family]}
    (folder / "processor_config.json").write_text(json.dumps(config))
    return family, folder, processor.tokenizer


def test_a_family_with_a_video_processor_loads_prepares_and_traces(saved_with_video) -> None:
    """Regression: AutoProcessor raised 'Qwen2VLVideoProcessor requires the Torchvision library' on
    a plain install; load_lvlm then could not load Qwen2-VL, Qwen2.5-VL, Qwen3-VL or InternVL at all."""
    from transformers.utils import is_torchvision_available

    family, folder, tokenizer = saved_with_video
    lvlm = load_lvlm(str(folder), device="cpu")
    assert ("video_processor" in lvlm.processor.get_attributes()) == is_torchvision_available()
    if not is_torchvision_available():
        with pytest.raises(UnsupportedModelError, match="install torchvision"):
            lvlm.processor.video_processor([])
    prepared = lvlm.prepare(Image.new("RGB", (50, 40), "red"), "Please describe this image in detail.")
    tokens = tokenizer.convert_ids_to_tokens(prepared.inputs["input_ids"][0].tolist())
    qwen = ("<|vision_start|>", "<|image_pad|>", "<|vision_end|>")
    first, placeholder, last = {"qwen2_vl": qwen, "qwen2_5_vl": qwen, "qwen3_vl": qwen,
                                "internvl": ("<img>", "<IMG_CONTEXT>", "</img>"),
                                "smolvlm": ("<fake_token_around_image>", "<image>",
                                            "<fake_token_around_image>")}[family]
    image = tokens[slice(*prepared.spans.image)]  # the markers around the run belong to the image
    inner = image[2:-1] if family == "smolvlm" else image[1:-1]  # SmolVLM: <global-img> opens the run
    assert image[0] == first and image[-1] == last and set(inner) == {placeholder}
    assert tokens[prepared.spans.instruction[0]] == "Please"
    trace = trace_generate(lvlm.model, prepared.inputs, prepared.spans, max_new_tokens=3, eos_token_ids=[])
    assert len(trace.tokens) == 3


def test_a_batch_from_the_real_processor_traces_as_each_prompt_alone(saved_with_video) -> None:
    """prepare_batch through the family's real processor (left padding, images of two sizes):
    each prompt's spans, tokens and saliency equal its batch-1 run. Regression: Gemma 3's and
    SmolVLM's processors read a flat image list as the images of one prompt."""
    from lvsal_data import trace_batch
    from lvsal_data.decoding import Greedy

    family, folder, _ = saved_with_video
    lvlm = load_lvlm(str(folder), device="cpu")
    images = [Image.new("RGB", (50, 40), "red"), Image.new("RGB", (64, 64), "blue")]
    prompts = ["Please describe this image in detail.", "describe a dog on the image ."]
    batch = lvlm.prepare_batch(images, prompts)
    traces = trace_batch(lvlm.model, batch.inputs, batch.spans, [Greedy(), Greedy()], max_new_tokens=3,
                         eos_token_ids=[])
    for b, (image, prompt) in enumerate(zip(images, prompts)):
        one = lvlm.prepare(image, prompt)
        assert batch.unpadded_spans(b) == one.spans
        alone = trace_generate(lvlm.model, one.inputs, one.spans, max_new_tokens=3, eos_token_ids=[])
        assert traces[b].token_ids == alone.token_ids
        for t, a in zip(traces[b].tokens, alone.tokens):
            assert t.summary.saliency == pytest.approx(a.summary.saliency, abs=1e-5)


def test_a_template_that_opens_with_bos_gets_no_second_one(saved_llava) -> None:
    """Gemma 3's and Llama 3.2 Vision's templates emit <bos> and their tokenizers add one: the
    prompt began <bos><bos>, a position the model never saw in training."""
    from tokenizers.processors import TemplateProcessing

    lvlm = load_lvlm(str(saved_llava), device="cpu")
    tokenizer = lvlm.tokenizer
    bos = tokenizer.bos_token_id
    tokenizer.backend_tokenizer.post_processor = TemplateProcessing(single="<s> $A", special_tokens=[("<s>", bos)])
    image = Image.new("RGB", (30, 30))
    added = lvlm.prepare(image, "Please describe this image .").inputs["input_ids"][0]
    assert added[0] == bos and added[1] != bos  # the tokenizer's BOS alone
    lvlm.processor.chat_template = "{{ bos_token }}" + lvlm.processor.chat_template
    for ids in (lvlm.prepare(image, "Please describe this image .").inputs["input_ids"][0],
                lvlm.prepare_batch([image, image], ["Please describe this image .", "a dog"]).inputs["input_ids"][1]):
        ids = ids[ids != tokenizer.pad_token_id]
        assert ids[0] == bos and ids[1] != bos  # the template's BOS alone


def test_paligemma_takes_the_raw_prompt_and_traces_its_prefix(tmp_path) -> None:
    """PaliGemma has no chat template: the processor gets the raw prompt (and adds the image
    tokens and BOS); the prompt is a bidirectional prefix (token types 0), traced as one."""
    from lvsal_data.saliency import SaliencyEngine
    from lvsal_data.testing import tiny_paligemma, tiny_paligemma_processor

    tiny_paligemma().model.save_pretrained(tmp_path)
    tiny_paligemma_processor(WORDS).save_pretrained(tmp_path)
    lvlm = load_lvlm(str(tmp_path), device="cpu")
    prepared = lvlm.prepare(Image.new("RGB", (50, 40), "red"), "Please describe this image in detail.")
    assert prepared.text == "Please describe this image in detail."
    ids = prepared.inputs["input_ids"][0].tolist()
    assert prepared.spans.image == (0, 4) and ids[:4] == [lvlm.model.config.image_token_index] * 4
    assert ids[4] == lvlm.tokenizer.bos_token_id and ids[5] == lvlm.tokenizer.convert_tokens_to_ids("Please")
    assert not prepared.inputs["token_type_ids"].any() and SaliencyEngine(lvlm.model).prefix_lm
    assert "labels" not in prepared.inputs  # the processor's training labels are no model input here
    trace = trace_generate(lvlm.model, prepared.inputs, prepared.spans, max_new_tokens=3, eos_token_ids=[])
    assert len(trace.tokens) == 3
