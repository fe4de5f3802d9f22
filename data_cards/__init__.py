"""Dataset-card templates rendered by ``lvsal publish`` (``trace_dataset.md``), and the cards
of the datasets the project ships."""
