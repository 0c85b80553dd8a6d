"""The everyday vocabulary per KLE group: its file, a tenant's additions, and unit profiles."""

from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path

import pytest

from services.classifier import vocabulary
from services.classifier.kle import KleEntry, KlePlan
from services.classifier.knowledge import unit_profiles
from shared.errors import ConfigurationError
from shared.tenant import Tenant

TENANT = Path(__file__).resolve().parents[2] / "deploy" / "examples" / "eksempelby"


def _entry_lines(language: str) -> list[str]:
    path = Path(vocabulary.__file__).with_name(vocabulary.file_name(language))
    return [line for line in path.read_text(encoding="utf-8").splitlines()
            if not line.startswith("#")]


def test_shipped_vocabulary_is_valid_and_covers_the_sample_units_areas() -> None:
    words = vocabulary.shipped()
    # As written in the file (parsing lower-cases, so the parsed words could not show it).
    assert _entry_lines("") == [line.lower() for line in _entry_lines("")]
    tenant = Tenant(TENANT)
    for unit in tenant.units.values():
        # every unit of the sample organisation gets everyday words for its KLE areas
        assert any(k == p or k.startswith(p + ".") for p in unit.kle for k in words), unit.id


@pytest.mark.parametrize(("language", "generic"), [
    ("en", "please question help municipality council application information email letter case "
           "request thank thanks dear regarding problem issue contact office department service "
           "citizen form payment"),
    ("de", "bitte frage fragen gemeinde antrag information brief fall anfrage danke problem "
           "kontakt amt abteilung hilfe kommune"),
])
def test_other_languages_name_the_same_areas_without_words_of_every_letter(
        language: str, generic: str) -> None:
    words = vocabulary.shipped(language)
    assert set(words) <= set(vocabulary.shipped())  # the same KLE groups and topics
    assert _entry_lines(language) == [line.lower() for line in _entry_lines(language)]
    assert [(k, w) for k, ws in words.items() for w in ws if set(w.split()) <= set(generic.split())
            ] == []
    # An entry under five groups or more tells none of them apart.
    counts = Counter(w for ws in words.values() for w in set(ws))
    assert sorted(w for w, n in counts.items() if n >= 5) == []


def test_a_tenant_adds_words_in_another_language(tmp_path: Path) -> None:
    (tmp_path / "vocabulary.en.yaml").write_text('"07.01": [Dustbin lorry]\n', encoding="utf-8")
    assert "dustbin lorry" in vocabulary.languages(tmp_path)["en"]["07.01"]
    assert vocabulary.languages(tmp_path)["de"] == vocabulary.load(None, "de")


def test_shipped_vocabulary_has_no_words_of_every_letter() -> None:
    # "spørgsmål", "sag" and the like are in any mail: a unit whose words hold them outranks
    # the others on a two-line "I have a question about my case" (seen: 99% sure).
    # Compared as lemmas, the way profiles are compared ("sagen" is "sag").
    from services.classifier.lemmas import lemmas

    generic = set(lemmas("spørgsmål sag henvendelse mail tak brev borger"))
    found = [(k, w) for k, ws in vocabulary.shipped().items() for w in ws
             if generic & set(lemmas(w))]
    assert found == []


def test_no_entry_is_only_words_every_text_has() -> None:
    # The lookup lemmatizer reads "duer" (pigeons) as "du" and "have" (garden) as the verb's
    # "hav": such an entry would make every letter look like its KLE area.
    from spacy.lang.da.stop_words import STOP_WORDS

    from services.classifier.lemmas import lemma, lemmas

    stop = set(STOP_WORDS) | {lemma(w) for w in STOP_WORDS}
    found = [(k, w) for k, ws in vocabulary.shipped().items() for w in ws
             if all(x in stop for x in lemmas(w) or ["-"])]
    assert found == []


@pytest.mark.parametrize(("text", "message"), [
    ("- a list", "expected a mapping"),
    ('"7.1": [skrald]', "not a KLE group or topic number"),
    ('"07.01": [skrald]\n"07.01": [spand]', "07.01 is given twice"),
    ("[a]: [skrald]", "not a KLE group or topic number"),
    ('"07.01": skrald', "expected a list of words"),
    ('"07.01": [skrald', "not YAML"),
])
def test_a_malformed_file_is_refused_with_its_place(text: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        vocabulary.parse(text, "words.yaml")


def test_unquoted_numbers_and_words_stay_text() -> None:
    # 20.10 unquoted is the number 20.1 to plain YAML, "no" is false and 112 a number
    assert vocabulary.parse("20.10: [no, 112, Skraldespand]", "w.yaml") == {
        "20.10": ("no", "112", "skraldespand")}


def test_a_tenant_adds_its_own_words(tmp_path: Path) -> None:
    (tmp_path / "vocabulary.yaml").write_text('"07.01": [Skraldemand, skraldespand]\n'
                                              '"99.99": [egen]\n', encoding="utf-8")
    merged = vocabulary.load(tmp_path)
    assert "skraldemand" in merged["07.01"]
    assert merged["07.01"].count("skraldespand") <= 1  # no repeats when both name a word
    assert merged["99.99"] == ("egen",)
    assert vocabulary.load(None) == {k: tuple(dict.fromkeys(v))
                                     for k, v in vocabulary.shipped().items()}


def test_words_of_a_topic_are_its_groups_and_its_own() -> None:
    words = {"05.09": ("p-bøde",), "05.09.04": ("beboerlicens",)}
    assert vocabulary.words_for("05.09.04", words) == ("p-bøde", "beboerlicens")
    assert vocabulary.words_for("05.09", words) == ("p-bøde",)
    assert vocabulary.words_for("05", words) == ()
    plan = KlePlan("x", {"05.09.04": KleEntry("05.09.04", "Beboerlicenser", keywords=("kl",))})
    assert vocabulary.with_vocabulary(plan, words).entries["05.09.04"].keywords == (
        "kl", "p-bøde", "beboerlicens")


def test_without_a_plan_the_vocabulary_describes_the_units_areas(tmp_path: Path) -> None:
    directory = tmp_path / "tenant"
    shutil.copytree(TENANT, directory)
    tenant = Tenant(directory)
    words = {"07.01": ("storskrald",), "05.14": ("vejskilt",), "05.14.09": ("særtransport",),
             "32.18": ("tabt arbejdsfortjeneste",)}
    texts = {p.unit: " | ".join(p.texts) for p in unit_profiles(tenant, None, words)}
    assert "storskrald" in texts["affald"]
    # a topic a unit owns inside another unit's group: the topic's words only
    assert "særtransport" in texts["parkering"] and "vejskilt" not in texts["parkering"]
    assert "vejskilt" in texts["vej-park"] and "særtransport" not in texts["vej-park"]
    assert "tabt arbejdsfortjeneste" in texts["ydelse"]


def test_training_reads_the_tenants_kle_plan_when_none_is_given(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch,
                                                                ) -> None:
    # `kle import --tenant DIR` then `train --tenant DIR`: the plan in DIR/kle.json is used.
    from services.classifier import training
    from services.classifier.document import Document, Label, LabelledItem

    directory = tmp_path / "tenant"
    shutil.copytree(TENANT, directory)
    plan = KlePlan("2015-08-01", {"07.18.10": KleEntry("07.18.10", "Storskrald")})
    (directory / "kle.json").write_text(plan.to_json(), encoding="utf-8")
    seen: list[KlePlan | None] = []
    real = training.KlePredictor.fit

    def spy(given: KlePlan | None, *args: object, **kwargs: object) -> object:
        seen.append(given)
        return real(given, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(training.KlePredictor, "fit", spy)
    items = [LabelledItem(f"i{n}", Document(subject=s, body=s), Label(u), group=f"g{n % 2}")
             for n, (s, u) in enumerate([("Sofa til storskrald", "affald"),
                                         ("P-bøde på Torvet", "parkering")] * 3)]
    training.train_model(Tenant(directory), items)
    assert seen and seen[0] is not None and "07.18.10" in seen[0].entries


def test_without_a_plan_the_kle_topics_come_from_the_vocabulary() -> None:
    topics = vocabulary.topics_plan({"07.18": ("storskrald",), "07.18.10": ("sofa",),
                                     "05.09.00": ("p-skive",), "05.09": ("p-bøde",)})
    assert topics is not None
    assert {c: e.keywords for c, e in topics.entries.items()} == {
        "07.18.10": ("sofa",), "07.18.00": ("storskrald",), "05.09.00": ("p-bøde", "p-skive")}
    assert vocabulary.topics_plan({}) is None


def test_every_vocabulary_file_is_packaged() -> None:
    # A non-editable install (the container image) carries only what pyproject names.
    import fnmatch
    import tomllib

    root = Path(__file__).resolve().parents[2]
    data = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))
    patterns = data["tool"]["setuptools"]["package-data"]["services.classifier"]
    for path in (root / "services" / "classifier").glob("vocabulary*.yaml"):
        assert any(fnmatch.fnmatch(path.name, p) for p in patterns), path.name
