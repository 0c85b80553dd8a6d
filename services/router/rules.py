"""Routing rules, as the router applies them. The language, its validation and the engine live
in `shared.rules` (the API validates, stores and simulates rules too); see its modules."""

from __future__ import annotations

from shared.rules.engine import Decision, Facts, Prediction, decide
from shared.rules.model import Action, Condition, ModelPolicy, Rule, RuleError, RuleSet

__all__ = ["Action", "Condition", "Decision", "Facts", "ModelPolicy", "Prediction", "Rule",
           "RuleError", "RuleSet", "decide"]
