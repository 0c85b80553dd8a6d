"""Everyday words per KLE group: the bridge between how KL names a subject and how people
write about it.

KLE's titles and guidance are written for archivists ("Indsamlingsordninger for farligt
affald"); citizens write "kan I hente maling og kemikalier". `vocabulary.yaml`, shipped with the
classifier, holds Postfordeler's own list of everyday words for each KLE group (`NN.NN`) and
for some topics (`NN.NN.NN`): our words, not KL's text, written from knowledge of municipal
work, not from any tenant's items. A tenant adds its own words in `vocabulary.yaml` in its
directory (same format). The words join the plan's keywords, so unit profiles and the KLE
predictor both read them; without an imported plan they alone describe the KLE areas a unit
owns.

`vocabulary.en.yaml` and `vocabulary.de.yaml` name the same groups the way people write about
them in English and German ("bin collection", "Sperrmüll"), for the expats, foreign workers,
summer-house owners and companies who write in those languages (about an eighth of the sample
municipality's mail). They become profile texts of their own that only mail mostly in another
language is compared with (model.py); a tenant adds words in `vocabulary.<language>.yaml`.
Measured by item file, English items' first choice improved (38 -> 40 of 52 right) and German
(7 -> 9 of 10), the total stayed within noise (auto-routed 77.1% -> 76.5%, random folds
75.6-79.2% -> 77.9-78.7%, at the same precision).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from functools import cache
from importlib import resources
from pathlib import Path

import yaml

from shared.errors import ConfigurationError

from .kle import KleEntry, KlePlan

Vocabulary = Mapping[str, tuple[str, ...]]
_KEY = re.compile(r"\d{2}\.\d{2}(?:\.\d{2})?")


class _StrictLoader(yaml.SafeLoader):
    """YAML that refuses a key given twice (the second list would silently replace the
    first) and reads every scalar as text: `05.09` stays "05.09", not the number 5.09, and a
    word such as `no` or `112` stays a word."""


def _mapping(loader: _StrictLoader, node: yaml.MappingNode) -> dict[str, object]:
    result: dict[str, object] = {}
    for key_node, value_node in node.value:
        key = loader.construct_scalar(key_node) if isinstance(key_node, yaml.ScalarNode) else ""
        if key in result:
            raise ConfigurationError(f"KLE number {key} is given twice (line "
                                     f"{key_node.start_mark.line + 1})")
        result[str(key)] = loader.construct_object(value_node, deep=True)
    return result


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)


def _text(loader: _StrictLoader, node: yaml.ScalarNode) -> str:
    return str(loader.construct_scalar(node))


for _tag in ("bool", "int", "float", "null", "timestamp"):
    _StrictLoader.add_constructor(f"tag:yaml.org,2002:{_tag}", _text)


def parse(text: str, source: str) -> dict[str, tuple[str, ...]]:
    """`"NN.NN": [word, ...]` per line of YAML; refuses any other shape with the place."""
    try:
        data = yaml.load(text, Loader=_StrictLoader) or {}  # noqa: S506 - a safe loader
    except yaml.YAMLError as exc:
        raise ConfigurationError(f"{source}: not YAML: {exc}") from exc
    except ConfigurationError as exc:
        raise ConfigurationError(f"{source}: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigurationError(f"{source}: expected a mapping of KLE numbers to word lists")
    result: dict[str, tuple[str, ...]] = {}
    for key, words in data.items():
        if not _KEY.fullmatch(key):
            raise ConfigurationError(f"{source}: {key!r} is not a KLE group or topic number "
                                     "(NN.NN or NN.NN.NN)")
        if not isinstance(words, list) or not all(isinstance(w, str) for w in words):
            raise ConfigurationError(f"{source}: {key}: expected a list of words")
        result[key] = tuple(w.strip().lower() for w in words if w.strip())
    return result


# Other languages of the mail, each in `vocabulary.<code>.yaml` beside the Danish one.
LANGUAGES = ("en", "de")


def file_name(language: str = "") -> str:
    """`vocabulary.yaml` (Danish) or `vocabulary.<language>.yaml`."""
    return f"vocabulary.{language}.yaml" if language else "vocabulary.yaml"


@cache
def shipped(language: str = "") -> Vocabulary:
    name = file_name(language)
    text = resources.files(__package__).joinpath(name).read_text(encoding="utf-8")
    return parse(text, f"services/classifier/{name}")


def load(directory: Path | None = None, language: str = "") -> Vocabulary:
    """The shipped vocabulary plus the tenant's own `vocabulary.yaml`, if it has one (for
    another `language`: `vocabulary.<language>.yaml`)."""
    merged = {k: list(v) for k, v in shipped(language).items()}
    path = directory / file_name(language) if directory is not None else None
    if path is not None and path.exists():
        for key, words in parse(path.read_text(encoding="utf-8"), str(path)).items():
            merged.setdefault(key, []).extend(words)
    return {k: tuple(dict.fromkeys(v)) for k, v in merged.items()}


def languages(directory: Path | None = None) -> dict[str, Vocabulary]:
    """The vocabularies of the other languages (English, German): how people who write to the
    municipality in them name the same subjects ("bin collection", "Sperrmüll")."""
    return {lang: load(directory, lang) for lang in LANGUAGES}


def digest(vocabulary: Vocabulary, languages: Mapping[str, Vocabulary] | None = None) -> str:
    """sha256 of the words, for a model's manifest: which vocabulary a model learnt from
    (with the other languages' words, when given)."""
    data: dict[str, object] = {k: list(v) for k, v in sorted(vocabulary.items())}
    if languages:
        data = {"da": data, **{lang: {k: list(v) for k, v in sorted(words.items())}
                               for lang, words in sorted(languages.items())}}
    text = json.dumps(data, ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


def words_for(code: str, vocabulary: Vocabulary) -> tuple[str, ...]:
    """The words of a KLE number: its group's, and a topic's own."""
    own = vocabulary.get(code, ()) if len(code) == 8 else ()
    return (*vocabulary.get(code[:5], ()), *own) if len(code) >= 5 else ()


def with_vocabulary(plan: KlePlan, vocabulary: Vocabulary) -> KlePlan:
    return plan.with_keywords({c: list(words_for(c, vocabulary)) for c in plan.entries})


def topics_plan(vocabulary: Vocabulary) -> KlePlan | None:
    """The KLE predictor's topics when no plan is imported: the vocabulary's topic keys, and
    for each group its general topic `NN.NN.00` ("... i almindelighed", which every KLE group
    has; checked against KL's plan in tests/integration/test_classifier_quality.py). By item
    file, the KLE group was right for 60% of the items without, 75% with these topics."""
    entries = {k: KleEntry(k, "", "", w) for k, w in vocabulary.items() if len(k) == 8}
    for k, w in vocabulary.items():
        if len(k) == 5:
            general = entries.get(f"{k}.00")
            entries[f"{k}.00"] = KleEntry(f"{k}.00", "", "", (*w, *(general.keywords
                                                                     if general else ())))
    return KlePlan("", entries) if entries else None
