"""Routing rules: the language (`model`), applying it (`engine`), versions in the database
(`store`) and the dry run (`replay`). Shared because the router applies the rules and the API
validates, stores and simulates them, and services do not import each other."""

from __future__ import annotations

from pathlib import Path

import yaml

from shared.errors import ConfigurationError

from .engine import Decision, Facts, Prediction, decide
from .model import Action, Condition, ModelPolicy, Rule, RuleError, RuleSet

__all__ = ["Action", "Condition", "Decision", "Facts", "ModelPolicy", "Prediction", "Rule",
           "RuleError", "RuleSet", "decide", "dump_yaml", "load_yaml", "parse_yaml"]


def parse_yaml(text: str, source: str) -> RuleSet:
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ConfigurationError(f"{source}: invalid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise RuleError(source, [("rules", "the file must be a mapping with a 'rules' list")])
    return RuleSet.parse(data, source)


def load_yaml(path: Path) -> RuleSet:
    """A rules.yaml file; no file means no rules."""
    if not path.exists():
        return RuleSet()
    return parse_yaml(path.read_text(encoding="utf-8"), str(path))


def dump_yaml(ruleset: RuleSet) -> str:
    return yaml.safe_dump(ruleset.document(), allow_unicode=True, sort_keys=False, width=100)
