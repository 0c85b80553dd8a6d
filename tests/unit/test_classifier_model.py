"""The routing model end to end on the sample data: train, store, load, predict, explain."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from postfordeler.cli import app
from services.classifier import store, vocabulary
from services.classifier.kle import parse_emneplan
from services.classifier.model import choose_threshold
from shared.errors import ConfigurationError, InvalidInput
from tests.conftest import CORPUS, SAMPLE_DATA

TENANT = Path(__file__).resolve().parents[2] / "deploy" / "examples" / "eksempelby"
ITEMS = Path(SAMPLE_DATA) / "items"
KLE_XML = Path(CORPUS) / "kle" / "KLE-valid-data.xml"


def test_threshold_is_the_lowest_confidence_meeting_the_target() -> None:
    import numpy as np

    conf = np.array([0.99, 0.95, 0.9, 0.8, 0.7])
    correct = np.array([1, 1, 1, 0, 1])
    assert choose_threshold(conf, correct, 0.97) == 0.9
    assert choose_threshold(conf, correct, 0.8) == 0.7
    assert choose_threshold(np.array([0.9]), np.array([0]), 0.97) == 1.0


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("models") / "eksempelby"
    result = CliRunner().invoke(app, ["train", "--items", str(ITEMS / "dev-2.jsonl"),
                                      "--items", str(ITEMS / "dev-5.jsonl"), "--tenant",
                                      str(TENANT), "--out", str(out)])
    assert result.exit_code == 0, result.output
    return out


def test_train_writes_model_and_manifest(model_dir: Path) -> None:
    manifest = json.loads((model_dir / "manifest.json").read_text())
    assert manifest["format_version"] == store.FORMAT_VERSION
    assert manifest["vocabulary_sha256"] == vocabulary.digest(vocabulary.load(TENANT),
                                                          vocabulary.languages(TENANT))
    assert set(manifest["libraries"]) >= {"scikit-learn", "numpy", "spacy"}
    assert len(manifest["training_data_sha256"]) == 64
    assert manifest["files"]["model.joblib"] == store._sha256(model_dir / "model.joblib")
    assert "ikke-relevant" in manifest["classes"] and "hovedpost" not in manifest["classes"]
    assert 0 < manifest["threshold"] <= 1 and manifest["metrics"]["items"] == 160


def test_loading_refuses_mismatched_libraries_and_tampered_files(model_dir: Path,
                                                                tmp_path: Path) -> None:
    import shutil

    copy = tmp_path / "m"
    shutil.copytree(model_dir, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["libraries"]["scikit-learn"] = "0.1.0"
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ConfigurationError, match=r"scikit-learn 0\.1\.0 \(installed"):
        store.load(copy)
    shutil.copy(model_dir / "manifest.json", copy / "manifest.json")
    (copy / "model.joblib").write_bytes(b"not a model")
    with pytest.raises(ConfigurationError, match="sha256"):
        store.load(copy)
    with pytest.raises(ConfigurationError, match="no manifest"):
        store.load(tmp_path)


def test_evaluate_json_has_the_keys_and_plots(model_dir: Path, tmp_path: Path) -> None:
    png = tmp_path / "confusion.png"
    result = CliRunner().invoke(app, ["evaluate", "--items", str(ITEMS / "dev-4.jsonl"),
                                      "--tenant", str(TENANT), "--model", str(model_dir),
                                      "--json", "--plot", str(png)])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert {"n", "auto_rate", "auto_precision", "clerk_accuracy", "not_relevant_precision",
            "not_relevant_recall", "kle_group_accuracy", "per_unit", "confusion"} <= set(report)
    assert report["n"] == 80 and png.read_bytes()[:4] == b"\x89PNG"
    assert report["not_relevant_receipts"] == 0


def test_prediction_is_explained(model_dir: Path) -> None:
    from services.classifier.document import Document
    from services.classifier.pipeline import Classifier
    from shared.tenant import Tenant

    model, _ = store.load(model_dir)
    c = Classifier.from_tenant(Tenant(TENANT), model).classify(
        Document(subject="Ansøgning om kontanthjælp", body="Jeg har mistet mit job og søger "
                 "kontanthjælp fra næste måned.", sender="a@gmail.com",
                 mailbox="post@eksempelby.dk"))
    assert c.prediction is not None and c.prediction.explanation
    assert 0.0 <= c.prediction.probability <= 1.0


def test_kle_import_writes_the_tenant_file(tmp_path: Path) -> None:
    if not KLE_XML.exists():
        pytest.skip("shared corpus missing")
    tenant = tmp_path / "t"
    tenant.mkdir()
    (tenant / "org.yaml").write_text((TENANT / "org.yaml").read_text())
    result = CliRunner().invoke(app, ["kle", "import", str(KLE_XML), "--tenant", str(tenant)])
    assert result.exit_code == 0, result.output
    assert "00.01.00" in (tenant / "kle.json").read_text()
    plan = parse_emneplan(KLE_XML.read_bytes())
    assert plan.entries["00.01"].title == "Kommunens styrelse"


def test_kle_import_rejects_invalid_xml() -> None:
    with pytest.raises(InvalidInput, match="invalid number"):
        parse_emneplan((Path(CORPUS) / "kle" / "KLE-error-data.xml").read_bytes())
    with pytest.raises(InvalidInput):
        parse_emneplan(b"<html/>")


def test_texts_in_other_languages_are_read_for_foreign_items_only() -> None:
    from services.classifier.features import Inputs, profile_inputs
    from services.classifier.model import PAIR_FEATURES, UnitRanker

    profiles = [(profile_inputs("storskrald affaldsspand"), "affald"),
                (profile_inputs("bulky waste bin collection", foreign=True), "affald"),
                (profile_inputs("parkeringsbøde p-skive"), "parkering"),
                (profile_inputs("parking fine parking ticket", foreign=True), "parkering")]
    ranker = UnitRanker.build(["affald", "parkering"], profiles, [], [])
    english = Inputs(own="my bin collection was missed", own_raw="", quoted="", tokens="",
                     foreign=True)
    danish = Inputs(own="bin collection storskrald", own_raw="", quoted="", tokens="")
    feats = ranker.features([english, danish])
    col = PAIR_FEATURES.index("foreign text word")
    assert feats[0, 0, col] > 0 and feats[0, 1, col] == 0
    assert feats[1, :, col].tolist() == [0.0, 0.0]
    # The whole profile of a unit (its Danish texts) does not hold the other languages' words.
    profile = PAIR_FEATURES.index("profile word")
    assert feats[0, 0, profile] == 0


def test_mail_mostly_in_another_language_is_foreign() -> None:
    from services.classifier.document import Document
    from services.classifier.features import UnitIndex, inputs

    index = UnitIndex({}, (), {})
    english = Document(subject="Missed bin collection", body="My bin was not emptied on Monday.")
    danish = Document(subject="Skraldespand", body="Min skraldespand blev ikke tømt i mandags.")
    assert inputs(english, (), index, {}).foreign
    assert not inputs(danish, (), index, {}).foreign


def test_a_letter_to_another_municipality_is_left_to_a_person(model_dir: Path) -> None:
    from services.classifier.document import Document
    from services.classifier.pipeline import Classifier
    from shared.tenant import Tenant

    clf = Classifier.from_tenant(Tenant(TENANT), model=store.load(model_dir)[0])
    body = ("Hans Toft\nSkovbrynet 19\n7992 Nabokøbing\n\nNabokøbing Kommune\nParkering\n"
            "Torvet 2\n7992 Nabokøbing\n\nJeg klager over min parkeringsafgift.")
    p = clf.classify(Document(subject="", body=body, channel="scan")).prediction
    assert p is not None and p.abstain and p.explanation[0] == "addressed to Nabokøbing Kommune"
