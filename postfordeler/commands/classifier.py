"""`postfordeler train`, `evaluate` and `kle import`: the routing model from the command line.

The CLI is where the classifier and the router meet outside the bus: `evaluate` runs the full
decision (entities, case lookup, the tenant's rules, the model, abstention) on labelled items.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from services.classifier.document import Document, LabelledItem, from_labelled
from services.classifier.evaluation import Outcome, confusion_text, evaluate
from services.classifier.pipeline import Classification, Classifier
from services.router import load_rules
from services.router.rules import Decision, Facts, Prediction, RuleSet, decide
from shared.contracts import RouteOutcome
from shared.errors import ConfigurationError, InvalidInput, TransientError
from shared.tenant import Tenant

if TYPE_CHECKING:
    from services.classifier.kle import KlePlan

kle_app = typer.Typer(help="KL's KLE plan.", no_args_is_help=True)

ItemsOpt = Annotated[list[Path], typer.Option("--items", help="Labelled item files (JSONL).")]
TenantOpt = Annotated[Path, typer.Option("--tenant", help="Tenant directory.")]


def read_items(paths: Iterable[Path]) -> list[LabelledItem]:
    items = []
    for path in paths:
        with path.open(encoding="utf-8") as fh:
            for n, line in enumerate(fh, start=1):
                if line.strip():
                    try:
                        items.append(from_labelled(json.loads(line), group=path.name))
                    except (json.JSONDecodeError, AttributeError) as exc:
                        raise InvalidInput(f"{path}:{n}: not a labelled item: {exc}") from exc
    return items


def route(classification: Classification, doc: Document, ruleset: RuleSet,
          tenant: Tenant) -> Decision:
    """The router's decision for a classified document (as the router service makes it)."""
    p = classification.prediction
    prediction = None if p is None else Prediction(p.label, p.probability, p.abstain,
                                                   p.explanation, classification.kle)
    facts = Facts(classification.entities, mailbox=doc.mailbox, channel=doc.channel,
                  prediction=prediction)
    return decide(ruleset, facts, tenant.cases, known_units=tenant.units,
                  fallback_unit=tenant.fallback_unit)


def outcomes(classifier: Classifier, items: Sequence[LabelledItem], ruleset: RuleSet,
             tenant: Tenant) -> list[tuple[Outcome, Decision]]:
    docs = [i.document for i in items]
    result = []
    for doc, c in zip(docs, classifier.classify_many(docs), strict=True):
        d = route(c, doc, ruleset, tenant)
        unit = {RouteOutcome.ROUTED: d.unit, RouteOutcome.NOT_RELEVANT: "ikke-relevant"}.get(
            d.outcome)
        result.append((Outcome(unit, d.clerk, d.receipt, d.kle or c.kle), d))
    return result


def run_evaluation(tenant: Tenant, classifier: Classifier, items: Sequence[LabelledItem],
                   ) -> tuple[dict[str, Any], list[tuple[Outcome, Decision]]]:
    ruleset = load_rules(tenant)
    done = outcomes(classifier, items, ruleset, tenant)
    return evaluate([i.label for i in items], [o for o, _ in done],
                    triage_label=tenant.fallback_unit), done


def plot_confusion(confusion: dict[str, dict[str, int]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = sorted(set(confusion) | {c for row in confusion.values() for c in row})
    grid = [[confusion.get(t, {}).get(p, 0) for p in labels] for t in labels]
    fig, ax = plt.subplots(figsize=(1 + 0.5 * len(labels), 1 + 0.5 * len(labels)))
    ax.imshow(grid, cmap="Blues")
    ax.set_xticks(range(len(labels)), labels, rotation=90)
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("routed to")
    ax.set_ylabel("true unit")
    for i, row in enumerate(grid):
        for j, v in enumerate(row):
            if v:
                ax.text(j, i, str(v), ha="center", va="center", fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _fail(exc: Exception) -> typer.Exit:
    typer.echo(f"error: {exc}", err=True)
    return typer.Exit(2)


def train_command(
    items: ItemsOpt,
    tenant: TenantOpt,
    out: Annotated[Path, typer.Option("--out", help="Model directory to write.")],
    target_precision: Annotated[float, typer.Option(help="Precision the threshold aims at.")
                                ] = 0.97,
    kle_plan: Annotated[Path | None, typer.Option(
        "--kle", help="KLE plan (kle.json); default the tenant's kle.json if it has one.")] = None,
    corrections: Annotated[bool, typer.Option(
        "--corrections", help="Add the items whose unit clerks corrected (from the database); "
                              "a corrected label overrides the item's label in --items.")
                           ] = False,
) -> None:
    """Train the routing model and write it with its manifest."""
    from services.classifier import store, vocabulary
    from services.classifier.kle import KlePlan
    from services.classifier.training import data_hash, train_model

    try:
        t = Tenant(tenant)
        labelled = read_items(items)
        if corrections:
            labelled = _with_corrections(labelled)
        plan = KlePlan.from_json(kle_plan.read_text(encoding="utf-8")) if kle_plan else None
        # Read once: what is trained on is what is hashed.
        words, foreign = vocabulary.load(t.directory), vocabulary.languages(t.directory)
        steps = ["features", "held-out fold 1", "held-out fold 2", "held-out fold 3",
                 "held-out fold 4", "held-out fold 5", "final model", "KLE predictor"]
        with typer.progressbar(length=len(steps), label="training") as bar:
            model, metrics = train_model(t, labelled, plan=plan,
                                         target_precision=target_precision,
                                         progress=lambda _step: bar.update(1), words=words,
                                         foreign=foreign)
        manifest = store.save(model, out, name=out.name, data_hash=data_hash(labelled),
                              metrics={**metrics, "items": len(labelled)}, tenant=str(tenant),
                              vocabulary_hash=vocabulary.digest(words, foreign))
    except (ConfigurationError, InvalidInput, OSError) as exc:
        raise _fail(exc) from exc
    typer.echo(f"wrote {out} ({len(labelled)} items, threshold {manifest['threshold']:.3f}, "
               f"held-out auto rate {metrics['heldout_auto_rate']:.1%} at precision "
               f"{metrics['heldout_auto_precision']:.1%})")


def _with_corrections(labelled: list[LabelledItem]) -> list[LabelledItem]:
    from postfordeler.commands.corrections import labelled as corrected_items
    from postfordeler.commands.corrections import read_corrections, report
    from services.classifier.corrections import merge
    from shared.settings import Settings

    loaded = read_corrections(Settings())
    typer.echo(f"corrections: {report(loaded)}")
    return merge(labelled, corrected_items(loaded))


def evaluate_command(
    items: ItemsOpt,
    tenant: TenantOpt,
    model: Annotated[Path | None, typer.Option("--model", help="Model directory.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    plot: Annotated[Path | None, typer.Option(help="Write the confusion matrix as PNG.")
                    ] = Path("confusion.png"),
) -> None:
    """Run the full decision on labelled items and report how well it routes."""
    from services.classifier import store

    try:
        t = Tenant(tenant)
        trained = store.load(model)[0] if model is not None else None
        classifier = Classifier.from_tenant(t, trained)
        report, _ = run_evaluation(t, classifier, read_items(items))
    except (ConfigurationError, InvalidInput, OSError) as exc:
        raise _fail(exc) from exc
    if plot is not None:
        plot_confusion(report["confusion"], plot)
    if as_json:
        typer.echo(json.dumps(report, ensure_ascii=False))
        return
    typer.echo(f"items {report['n']}: auto-routed {report['auto_rate']:.1%} at precision "
               f"{report['auto_precision']:.1%}; clerk accuracy {report['clerk_accuracy']:.1%}; "
               f"ikke-relevant precision {report['not_relevant_precision']:.1%} recall "
               f"{report['not_relevant_recall']:.1%}; KLE group accuracy "
               f"{report['kle_group_accuracy']:.1%}")
    for unit, m in report["per_unit"].items():
        typer.echo(f"  {unit:16} precision {m['precision']:.0%}  recall {m['recall']:.0%}  "
                   f"({m['support']} items)")
    typer.echo(confusion_text(report["confusion"]))


@kle_app.command("import")
def kle_import(
    tenant: TenantOpt,
    source: Annotated[Path | None, typer.Argument(help="KLE-Emneplan XML file.")] = None,
    url: Annotated[str | None, typer.Option(
        help="KLE-online's REST service instead of a file, e.g. "
             "https://api.kle-online.dk/resources/kle")] = None,
    token_env: Annotated[str | None, typer.Option(
        help="Environment variable holding a KLE-online token (sent as a bearer token).")
                         ] = None,
    timeout: Annotated[float, typer.Option(min=1, help="Seconds to wait for KLE-online.")
                       ] = 60.0,
    keywords: Annotated[Path | None, typer.Option(
        help="OS2KLE keyword file (KLE number; keyword per line).")] = None,
    include_expired: Annotated[bool, typer.Option(help="Keep numbers no longer in use.")
                               ] = False,
) -> None:
    """Load KL's KLE plan into the tenant directory (kle.json), from KL's XML file or from
    KLE-online (--url)."""
    from services.classifier.kle import parse_emneplan, parse_keywords

    if (source is None) == (url is None):
        raise _fail(InvalidInput("give either an XML file or --url"))
    try:
        Tenant(tenant)  # the directory must be a tenant's
        if url is not None:
            plan = _kle_online(url, token_env, timeout, include_expired)
        else:
            assert source is not None
            plan = parse_emneplan(source.read_bytes(), include_expired=include_expired)
        if keywords is not None:
            plan = plan.with_keywords(parse_keywords(keywords.read_text(encoding="utf-8")))
        (tenant / "kle.json").write_text(plan.to_json(), encoding="utf-8")
    except (ConfigurationError, InvalidInput, TransientError, OSError) as exc:
        raise _fail(exc) from exc
    typer.echo(f"imported KLE plan of {plan.published}: {len(plan.entries)} numbers "
               f"into {tenant / 'kle.json'}")


def _kle_online(url: str, token_env: str | None, timeout: float,
                include_expired: bool) -> KlePlan:
    from services.classifier.kle_online import KleOnline, fetch_plan
    from shared.tenant import env_secret

    token = env_secret(token_env, "KLE-online token", allow_empty=False) if token_env else None
    bar: Any = None

    def progress(received: int, total: int | None) -> None:
        nonlocal bar
        if total is None:
            return  # no length announced: nothing to measure against
        if bar is None:
            bar = typer.progressbar(length=total, label="KLE-online", file=sys.stderr)
            bar.__enter__()
        bar.update(received - bar.pos)

    try:
        return fetch_plan(KleOnline(url, token=token, timeout=timeout, progress=progress),
                          include_expired=include_expired)
    finally:
        if bar is not None:
            bar.__exit__(None, None, None)


def register(app: typer.Typer) -> None:
    app.command("train")(train_command)
    app.command("evaluate")(evaluate_command)
    app.add_typer(kle_app, name="kle")
    from postfordeler.commands.corrections import app as corrections_app

    app.add_typer(corrections_app, name="corrections")
