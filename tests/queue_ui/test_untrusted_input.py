"""Issue 14, items 4 and 5: nothing user-written is interpreted (one escaping helper; labels and
tasks checked against the task table in the CLI and the store), and small samples are not compared."""

import re

import numpy as np
import pytest
from queue_ui_helpers import TYPE_CLASSES, held_out_metrics, make_version

PAYLOAD = "![x](https://evil.example/pixel.png) <img src=https://evil.example/a.png> **bold** :red[hi]"


def test_escaped_text_renders_as_text_not_markdown_or_html():
    """Every Markdown/HTML special character arrives backslash-escaped (CommonMark shows an escaped
    character as itself), so no image, link, emphasis, tag or directive can start."""
    import string

    from core.markup import text

    out = text(PAYLOAD)
    for i, ch in enumerate(out):
        if ch in string.punctuation and ch != "\\":
            assert out[i - 1] == "\\", (ch, out[max(0, i - 5) : i + 5])
    assert re.sub(r"\\(.)", r"\1", out) == PAYLOAD  # unescaped, it reads as typed
    assert "\n" not in text("a\n# heading") and text(None) == ""


def test_store_refuses_unknown_tasks_and_labels():
    from core.store import Store
    from core.tasks import InvalidLabel

    repo = Store.open()
    case = repo.cases.save({"modality": "MR", "shape": (1, 4, 4)}, np.zeros((1, 4, 4)), tasks=["tumor_type"])
    item = repo.cases.items(case)[0].id
    with pytest.raises(InvalidLabel, match="not a class of tumor_type"):
        repo.queue.label(item, "tumor_type", "not-a-class", "ann")
    with pytest.raises(InvalidLabel, match="unknown task"):
        repo.queue.label(item, "bogus_task", "glioma", "ann")
    with pytest.raises(ValueError):
        repo.queue.label(item, "tumor_type", PAYLOAD, "ann")
    assert repo.queue.label_history(item, "tumor_type") == []
    assert repo.queue.label(item, "tumor_type", "glioma", "ann") == 1


def test_cli_refuses_unknown_tasks_and_labels(capsys):
    from core.cli import main
    from core.store import Store

    repo = Store.open()
    case = repo.cases.save({"modality": "MR", "shape": (1, 4, 4)}, np.zeros((1, 4, 4)), tasks=["tumor_type"])
    item = str(repo.cases.items(case)[0].id)
    with pytest.raises(SystemExit) as exc:  # argparse: --task must be in the task table
        main(["queue", "label", item, "not-a-class", "--task", "bogus_task", "--reviewer", "ann"])
    assert exc.value.code != 0 and "bogus_task" in capsys.readouterr().err
    assert main(["queue", "label", item, "not-a-class", "--task", "tumor_type", "--reviewer", "ann"]) == 2
    assert "not a class of tumor_type" in capsys.readouterr().err
    assert main(["queue", "label", item, "not-a-class", "--reviewer", "ann"]) == 2  # task from the queue
    assert main(["queue", "label", item, "glioma", "--reviewer", "ann"]) == 0


def _small_metrics(per_class: int) -> dict:
    m = held_out_metrics(1.0, width=0.0)
    m["confusion"] = (np.eye(3, dtype=int) * per_class).tolist()
    for c in TYPE_CLASSES:
        m["per_class"][c]["support"] = per_class
    return m


def test_two_held_out_items_are_not_compared(monkeypatch):
    """The issue's case: a challenger scored on a handful of held-out items (AUC 1.000 [1.000,
    1.000]) is not compared: the reason says so and no metric rows are given."""
    from core.promotion import MINIMUMS, compare, too_small
    from core.zoo import set_active

    make_version("tumor_type", "1.0.0", TYPE_CLASSES, _small_metrics(1), "fp-small")
    make_version("tumor_type", "1.0.1", TYPE_CLASSES, _small_metrics(1), "fp-small", seed=1)
    set_active("tumor_type", "1.0.0")
    c = compare("tumor_type", "1.0.1")
    assert not c.comparable and not c.beats and c.metrics == []
    assert re.search(r"too few held-out items to compare: 3 \(glioma 1, meningioma 1, pituitary 1\)", c.reason)
    assert f"at least {MINIMUMS.held_out} held-out items" in c.reason
    # at the minimum it is compared
    assert too_small(_small_metrics(7)) == ""
    assert too_small(_small_metrics(6)) != ""  # 18 < 20 held out
    card = {"recipe": {"split": {"labels_per_class": {"glioma": 40, "meningioma": 5, "pituitary": 40}}}}
    assert "too few confirmed labels" in too_small(_small_metrics(10), card)


def test_cli_compare_says_too_few_instead_of_metrics(capsys):
    from core.cli import main
    from core.zoo import set_active

    make_version("tumor_type", "1.0.0", TYPE_CLASSES, _small_metrics(1), "fp-small")
    make_version("tumor_type", "1.0.1", TYPE_CLASSES, _small_metrics(1), "fp-small", seed=1)
    set_active("tumor_type", "1.0.0")
    main(["zoo", "compare", "tumor_type@1.0.1"])
    out = capsys.readouterr().out
    assert "too few held-out items" in out and "balanced_accuracy" not in out and "1.000 [" not in out
