"""The deployment files beyond compose: Kubernetes manifests and Qdrant's Helm values,
the Render Blueprint and the Railway config, and the CI workflow, each validated
against its schema offline, and held to what docs/deployment.md promises."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from graph.settings import ServerSettings, Settings

ROOT = Path(__file__).resolve().parents[2]
KUBERNETES = ROOT / "deploy" / "kubernetes"
SCHEMAS = ROOT / "deploy" / "schemas"
KUBERNETES_VERSION = "1.37.0"
SECRET_ENV = {"AUTH_JWT_SECRET", "QDRANT_API_KEY", "RATE_LIMIT_STORAGE_URL"}


def load_all(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


KUSTOMIZATION: dict[str, Any] = yaml.safe_load((KUBERNETES / "kustomization.yaml").read_text())
RESOURCES = [doc for name in KUSTOMIZATION["resources"] for doc in load_all(KUBERNETES / name)]


def resource(kind: str, name: str) -> dict[str, Any]:
    (found,) = [r for r in RESOURCES if r["kind"] == kind and r["metadata"]["name"] == name]
    return found


DEPLOYMENT = resource("Deployment", "graph-memory")
POD = DEPLOYMENT["spec"]["template"]["spec"]
(API,) = [c for c in POD["containers"] if c["name"] == "api"]


def test_the_kustomization_lists_every_manifest() -> None:
    listed = set(KUSTOMIZATION["resources"])
    optional = {"servicemonitor.yaml"}  # needs the Prometheus Operator's CRDs
    not_manifests = {"kustomization.yaml", "qdrant-values.yaml"}
    on_disk = {path.name for path in KUBERNETES.glob("*.yaml")}
    assert listed == on_disk - optional - not_manifests


@pytest.mark.parametrize("name", KUSTOMIZATION["resources"])
def test_each_manifest_is_valid_kubernetes(name: str) -> None:
    for doc in load_all(KUBERNETES / name):
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def test_strict_validation_refuses_a_misspelt_field() -> None:
    broken = json.loads(json.dumps(DEPLOYMENT))
    broken["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)


def test_the_api_runs_replicated_with_probes_on_the_readiness_drain() -> None:
    assert DEPLOYMENT["spec"]["replicas"] >= 2
    assert API["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert API["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert "preStop" not in API.get("lifecycle", {})  # the app drains itself (see the file)
    env = {e["name"]: e.get("value") for e in API["env"]}
    defaults = ServerSettings.model_fields
    delay = float(env.get("SHUTDOWN_DELAY_SECONDS") or defaults["shutdown_delay_seconds"].default)
    grace = float(env.get("SHUTDOWN_GRACE_SECONDS") or defaults["shutdown_grace_seconds"].default)
    assert POD["terminationGracePeriodSeconds"] > delay + grace
    # Multi-replica means the Qdrant server, never the single-process embedded store.
    assert env["QDRANT_URL"], "replicas must share a Qdrant server"
    assert "DATA_DIR" not in env


def test_secrets_are_passed_by_reference_only() -> None:
    by_name = {e["name"]: e for e in API["env"]}
    assert set(by_name) >= SECRET_ENV
    for name in SECRET_ENV:
        assert "value" not in by_name[name], name
        assert by_name[name]["valueFrom"]["secretKeyRef"]["name"] == "graph-memory", name
    assert not [r for r in RESOURCES if r["kind"] == "Secret"], "secrets are never committed"


def test_every_environment_variable_is_a_setting() -> None:
    names = set(Settings.names())
    for doc in RESOURCES:
        if doc["kind"] != "Deployment" or doc["metadata"]["name"] != "graph-memory":
            continue
        for container in doc["spec"]["template"]["spec"]["containers"]:
            for env in container.get("env", []):
                assert env["name"].lower() in names, env["name"]


def test_the_pod_runs_as_the_images_unprivileged_user() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "--uid 10001" in dockerfile
    assert POD["securityContext"]["runAsUser"] == 10001
    assert POD["securityContext"]["runAsNonRoot"] is True
    assert API["securityContext"]["allowPrivilegeEscalation"] is False
    assert API["securityContext"]["readOnlyRootFilesystem"] is True
    for kind in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(API["resources"][kind]), kind


def test_the_pdb_the_hpa_and_the_service_select_the_api() -> None:
    labels = DEPLOYMENT["spec"]["template"]["metadata"]["labels"]
    assert DEPLOYMENT["spec"]["selector"]["matchLabels"].items() <= labels.items()
    pdb = resource("PodDisruptionBudget", "graph-memory")
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert pdb["spec"]["minAvailable"] < DEPLOYMENT["spec"]["replicas"]
    service = resource("Service", "graph-memory")
    assert service["spec"]["selector"].items() <= labels.items()
    hpa = resource("HorizontalPodAutoscaler", "graph-memory")
    target = hpa["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", "graph-memory")
    assert hpa["spec"]["minReplicas"] >= 2
    assert [m["resource"]["name"] for m in hpa["spec"]["metrics"]] == ["cpu"]


def test_metrics_are_scraped() -> None:
    annotations = DEPLOYMENT["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/path"] == "/metrics"
    assert annotations["prometheus.io/port"] == str(API["ports"][0]["containerPort"])
    (monitor,) = load_all(KUBERNETES / "servicemonitor.yaml")
    assert monitor["kind"] == "ServiceMonitor"
    labels = DEPLOYMENT["spec"]["template"]["metadata"]["labels"]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert monitor["spec"]["endpoints"][0]["path"] == "/metrics"


def test_rate_limits_are_shared_through_the_redis_service() -> None:
    resource("Deployment", "graph-memory-redis")
    resource("Service", "graph-memory-redis")


def test_qdrant_runs_as_a_replicated_cluster_with_a_key() -> None:
    values: dict[str, Any] = yaml.safe_load((KUBERNETES / "qdrant-values.yaml").read_text())
    assert values["replicaCount"] == 3
    assert values["config"]["cluster"]["enabled"] is True
    assert values["persistence"]["size"]
    assert values["apiKey"]["valueFrom"]["secretKeyRef"]["name"]
    collection = values["config"]["storage"]["collection"]
    assert 2 <= collection["replication_factor"] <= values["replicaCount"]
    assert 1 <= collection["write_consistency_factor"] <= collection["replication_factor"]


def schema_errors(document: Any, schema_file: str) -> list[str]:
    schema = json.loads((SCHEMAS / schema_file).read_text())
    validator = jsonschema.Draft202012Validator(schema)
    return [error.message for error in validator.iter_errors(document)]


RENDER: dict[str, Any] = yaml.safe_load((ROOT / "render.yaml").read_text())
RAILWAY: dict[str, Any] = json.loads((ROOT / "railway.json").read_text())


def test_the_render_blueprint_matches_its_schema() -> None:
    assert schema_errors(RENDER, "render-blueprint.subset.schema.json") == []
    broken = {"services": [{**RENDER["services"][0], "healthcheckPath": "/readyz"}]}
    assert schema_errors(broken, "render-blueprint.subset.schema.json")


def test_the_render_service_keeps_the_embedded_store_on_one_disk() -> None:
    (web,) = RENDER["services"]
    assert web["runtime"] == "docker" and web["dockerfilePath"] == "./Dockerfile"
    assert web["healthCheckPath"] == "/readyz"
    assert web["numInstances"] == 1
    env = {e["key"]: e for e in web["envVars"]}
    assert web["disk"]["mountPath"] == env["DATA_DIR"]["value"]
    assert env["AUTH_JWT_SECRET"] == {"key": "AUTH_JWT_SECRET", "generateValue": True}
    assert env["QDRANT_API_KEY"].get("sync") is False
    assert {key.lower() for key in env} <= set(Settings.names())
    delay = float(env["SHUTDOWN_DELAY_SECONDS"]["value"])
    grace = float(env["SHUTDOWN_GRACE_SECONDS"]["value"])
    assert web["maxShutdownDelaySeconds"] > delay + grace


def test_the_railway_config_matches_its_schema() -> None:
    assert schema_errors(RAILWAY, "railway.subset.schema.json") == []
    deploy = RAILWAY["deploy"]
    assert RAILWAY["build"] == {"builder": "DOCKERFILE", "dockerfilePath": "Dockerfile"}
    assert deploy["healthcheckPath"] == "/readyz"
    assert deploy["numReplicas"] == 1
    assert deploy["restartPolicyType"] == "ON_FAILURE"
    broken = {**RAILWAY, "deploy": {**deploy, "restartPolicyType": "on-failure"}}
    assert schema_errors(broken, "railway.subset.schema.json")


@pytest.mark.parametrize(
    ("schema", "path"),
    [
        ("vendor.github-workflows", ".github/workflows/ci.yml"),
        ("vendor.compose-spec", "compose.yml"),
    ],
)
def test_check_jsonschema_accepts(schema: str, path: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", schema, str(ROOT / path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_images_match_the_compose_stack() -> None:
    compose: dict[str, Any] = yaml.safe_load((ROOT / "compose.yml").read_text())
    api_image, api_tag = compose["services"]["api"]["image"].split(":")
    (image,) = KUSTOMIZATION["images"]
    assert (image["name"], image["newTag"]) == (api_image, api_tag)
    assert API["image"].split(":")[0] == image["name"]
    values: dict[str, Any] = yaml.safe_load((KUBERNETES / "qdrant-values.yaml").read_text())
    assert compose["services"]["qdrant"]["image"].endswith(":" + values["image"]["tag"])


def test_the_readme_points_to_the_deployment_guide() -> None:
    assert "(docs/deployment.md)" in (ROOT / "README.md").read_text()
    guide = (ROOT / "docs" / "deployment.md").read_text()
    for path in ["render.yaml", "railway.json", "qdrant-values.yaml", "kubectl apply -k"]:
        assert path in guide, path
