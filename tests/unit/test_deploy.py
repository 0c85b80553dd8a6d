"""The deployment files are valid without a cluster or a Docker engine: the compose file against
the Compose specification's schema, every Kubernetes manifest against the Kubernetes schemas
(strict: unknown fields are errors), and the kustomizations refer to files that exist."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
K8S = DEPLOY / "k8s"
KUBERNETES_VERSION = "1.31"
MANIFESTS = sorted(p for p in K8S.rglob("*.yaml")
                   if p.name != "kustomization.yaml" and "tenant" not in p.parts)


def test_compose_file_follows_the_compose_specification() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.compose-spec",
         str(DEPLOY / "compose.yaml")], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_runs_each_service_with_the_shared_volume() -> None:
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    workers = {"ingest", "classifier", "router", "journal", "api"}
    assert workers <= set(compose["services"])
    for name in workers:
        service = compose["services"][name]
        assert service["command"][:2] == ["run", name]
        assert "blobs:/var/lib/postfordeler" in service["volumes"]


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: str(p.relative_to(K8S)))
def test_manifest_is_valid_kubernetes(path: Path) -> None:
    for doc in yaml.safe_load_all(path.read_text()):
        if path.name == "replicas.yaml":  # a strategic-merge patch: only the fields it changes
            assert doc["kind"] == "Deployment" and "replicas" in doc["spec"]
            continue
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def test_every_worker_has_probes_resources_and_secrets() -> None:
    for path in K8S.glob("base/deploy-*.yaml"):
        container = yaml.safe_load(path.read_text())["spec"]["template"]["spec"]["containers"][0]
        assert container["readinessProbe"]["httpGet"]["path"] == "/health/ready", path
        assert container["livenessProbe"]["httpGet"]["path"] == "/health/live", path
        assert container["resources"]["requests"], path
        assert {"secretRef": {"name": "postfordeler-secrets"}} in container["envFrom"], path


@pytest.mark.parametrize("kustomization", sorted(K8S.rglob("kustomization.yaml")),
                         ids=lambda p: str(p.parent.relative_to(K8S)))
def test_kustomization_refers_to_existing_files(kustomization: Path) -> None:
    spec = yaml.safe_load(kustomization.read_text())
    here = kustomization.parent
    for resource in spec.get("resources", []):
        target = here / resource
        assert target.is_file() or (target / "kustomization.yaml").is_file(), resource
    for patch in spec.get("patches", []):
        assert (here / patch["path"]).is_file(), patch
    for generator in spec.get("configMapGenerator", []) + spec.get("secretGenerator", []):
        for name in generator.get("files", []) + generator.get("envs", []):
            assert (here / name).is_file(), name
    base = K8S / "base" / "kustomization.yaml"
    listed = set(yaml.safe_load(base.read_text())["resources"])
    assert listed == {p.name for p in (K8S / "base").glob("*.yaml")} - {"kustomization.yaml"}
