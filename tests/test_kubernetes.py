"""The Kubernetes manifests: every file parses, and the pieces agree with each other and with the
app (probe paths and ports, graceful termination, labels, the migration Job's image and command).

`kubeconform` (schema validation) runs when it is on PATH; it is on neither PyPI nor Debian, so
CI installs it separately if at all.
"""

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from app.cli import cli
from app.core.config import Settings
from app.main import create_app

MANIFESTS = Path(__file__).resolve().parents[1] / "deploy" / "kubernetes"
APP_NAME = "employee-records-api"


def documents() -> list[dict[str, Any]]:
    found = []
    for path in sorted(MANIFESTS.glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text()):
            assert isinstance(document, dict), path.name
            found.append(document)
    return found


def manifest(kind: str) -> dict[str, Any]:
    (found,) = [d for d in documents() if d["kind"] == kind]
    return found


def api_container() -> dict[str, Any]:
    (container,) = manifest("Deployment")["spec"]["template"]["spec"]["containers"]
    return container


def config_value(name: str) -> str:
    return str(manifest("ConfigMap")["data"][name])


def matches(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(key) == value for key, value in selector.items())


class TestManifests:
    def test_every_file_parses_into_named_objects(self) -> None:
        kinds = sorted(d["kind"] for d in documents())
        assert kinds == sorted(
            [
                "ConfigMap",
                "CronJob",
                "Deployment",
                "HorizontalPodAutoscaler",
                "Job",
                "PodDisruptionBudget",
                "Secret",
                "Service",
            ]
        )
        for document in documents():
            assert document["apiVersion"] and document["metadata"]["name"].startswith(APP_NAME)

    @pytest.mark.skipif(shutil.which("kubeconform") is None, reason="kubeconform is not on PATH")
    def test_kubeconform_accepts_every_manifest(self) -> None:
        kubeconform = shutil.which("kubeconform")
        assert kubeconform is not None
        files = [str(path) for path in sorted(MANIFESTS.glob("*.yaml"))]
        result = subprocess.run(
            [kubeconform, "-strict", "-summary", *files],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert result.returncode == 0, result.stdout + result.stderr


class TestDeployment:
    def test_probes_call_the_apps_health_routes_on_the_serving_port(self) -> None:
        container = api_container()
        (port,) = container["ports"]
        assert port["containerPort"] == int(config_value("PORT"))
        routes = set(create_app().openapi()["paths"])
        expected = {
            "startupProbe": "/health/live",
            "livenessProbe": "/health/live",  # never the database: an outage restarts nothing
            "readinessProbe": "/health/ready",
        }
        for probe, path in expected.items():
            http_get = container[probe]["httpGet"]
            assert http_get["path"] == path, probe
            assert http_get["path"] in routes
            assert http_get["port"] == port["name"], probe

    def test_readiness_timeout_exceeds_the_apps_own_health_check_timeout(self) -> None:
        default = Settings.model_fields["health_check_timeout"].default
        assert api_container()["readinessProbe"]["timeoutSeconds"] > default

    def test_grace_period_covers_the_pre_stop_pause_and_the_drain(self) -> None:
        spec = manifest("Deployment")["spec"]["template"]["spec"]
        pre_stop = api_container()["lifecycle"]["preStop"]["exec"]["command"]
        assert pre_stop[0] == "sleep"
        drain = int(config_value("SHUTDOWN_DRAIN_SECONDS"))
        assert spec["terminationGracePeriodSeconds"] > int(pre_stop[1]) + drain

    def test_resources_have_requests_and_a_memory_limit(self) -> None:
        resources = api_container()["resources"]
        assert {"cpu", "memory"} <= set(resources["requests"])
        assert "memory" in resources["limits"]

    def test_runs_as_the_images_non_root_user_on_a_read_only_root(self) -> None:
        spec = manifest("Deployment")["spec"]["template"]["spec"]
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["securityContext"]["runAsUser"] == 10001  # USER in the Dockerfile
        container = api_container()["securityContext"]
        assert container["readOnlyRootFilesystem"] is True
        assert container["allowPrivilegeEscalation"] is False
        assert container["capabilities"]["drop"] == ["ALL"]
        mounts = {m["mountPath"] for m in api_container()["volumeMounts"]}
        assert "/tmp" in mounts  # noqa: S108  # the one writable place: an emptyDir

    def test_settings_come_from_the_secret_and_config_map_and_pods_never_migrate(self) -> None:
        container = api_container()
        sources = {
            (kind, ref["name"]) for item in container["envFrom"] for kind, ref in item.items()
        }
        assert sources == {
            ("configMapRef", manifest("ConfigMap")["metadata"]["name"]),
            ("secretRef", manifest("Secret")["metadata"]["name"]),
        }
        assert {"name": "MIGRATE_ON_START", "value": "false"} in container["env"]

    def test_selector_matches_the_pod_labels(self) -> None:
        deployment = manifest("Deployment")["spec"]
        labels = deployment["template"]["metadata"]["labels"]
        assert matches(deployment["selector"]["matchLabels"], labels)


class TestServiceAndAutoscaler:
    def test_service_selects_the_api_pods_only(self) -> None:
        service = manifest("Service")["spec"]
        api_labels = manifest("Deployment")["spec"]["template"]["metadata"]["labels"]
        job_labels = manifest("Job")["spec"]["template"]["metadata"]["labels"]
        cron = manifest("CronJob")["spec"]["jobTemplate"]["spec"]["template"]["metadata"]
        assert matches(service["selector"], api_labels)
        assert not matches(service["selector"], job_labels)
        assert not matches(service["selector"], cron["labels"])
        (port,) = service["ports"]
        assert port["targetPort"] == api_container()["ports"][0]["name"]

    def test_autoscaler_scales_the_deployment_on_cpu(self) -> None:
        hpa = manifest("HorizontalPodAutoscaler")
        assert hpa["apiVersion"] == "autoscaling/v2"
        target = hpa["spec"]["scaleTargetRef"]
        assert (target["kind"], target["name"]) == (
            "Deployment",
            manifest("Deployment")["metadata"]["name"],
        )
        (metric,) = hpa["spec"]["metrics"]
        assert metric["resource"]["name"] == "cpu"
        assert 2 <= hpa["spec"]["minReplicas"] < hpa["spec"]["maxReplicas"]
        # Utilization is relative to the request, so there must be one.
        assert "cpu" in api_container()["resources"]["requests"]

    def test_disruption_budget_covers_the_api_pods(self) -> None:
        selector = manifest("PodDisruptionBudget")["spec"]["selector"]["matchLabels"]
        labels = manifest("Deployment")["spec"]["template"]["metadata"]["labels"]
        assert matches(selector, labels)


class TestMigrationJob:
    def test_runs_alembic_with_the_deployments_image_and_secret(self) -> None:
        job = manifest("Job")["spec"]
        (container,) = job["template"]["spec"]["containers"]
        assert container["args"] == ["alembic", "upgrade", "head"]
        assert "command" not in container  # the image's entrypoint runs the args
        assert container["image"] == api_container()["image"]
        assert {"secretRef": {"name": manifest("Secret")["metadata"]["name"]}} in container[
            "envFrom"
        ]
        assert job["template"]["spec"]["restartPolicy"] == "Never"
        assert job["backoffLimit"] >= 1

    def test_runs_as_non_root(self) -> None:
        spec = manifest("Job")["spec"]["template"]["spec"]
        assert spec["securityContext"]["runAsNonRoot"] is True


class TestPurgeCronJob:
    def test_runs_the_purge_command_with_the_deployments_image_and_secret(self) -> None:
        cron = manifest("CronJob")["spec"]
        pod = cron["jobTemplate"]["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        assert container["args"] == ["python", "-m", "app", "purge-expired"]
        assert "purge-expired" in {command.name for command in cli.registered_commands}
        assert "command" not in container  # the image's entrypoint runs the args
        assert container["image"] == api_container()["image"]
        assert {"secretRef": {"name": manifest("Secret")["metadata"]["name"]}} in container[
            "envFrom"
        ]
        assert cron["concurrencyPolicy"] == "Forbid"
        assert pod["restartPolicy"] == "Never"
        assert pod["securityContext"]["runAsNonRoot"] is True


class TestSecretTemplate:
    def test_holds_placeholders_only(self) -> None:
        secret = manifest("Secret")
        assert "data" not in secret  # nothing base64-encoded that could hide a real value
        values = secret["stringData"]
        assert {"DATABASE_URL", "JWT_SECRET_KEY"} <= set(values)
        for name in ("DATABASE_URL", "JWT_SECRET_KEY"):
            assert values[name] == "REPLACE-ME", name
        assert values.get("FIRST_ADMIN_PASSWORD", "") == ""

    def test_every_key_is_a_setting_or_documented(self) -> None:
        settings = {name.upper() for name in Settings.model_fields}
        for name in manifest("Secret")["stringData"]:
            assert name in settings, name
        for name in manifest("ConfigMap")["data"]:
            assert name in settings or name in PROCESS_VARIABLES, name


# Read by the entrypoint, `python -m app serve` or uvicorn rather than by Settings.
PROCESS_VARIABLES = {
    "PORT",
    "WEB_CONCURRENCY",
    "MIGRATE_ON_START",
    "FORWARDED_ALLOW_IPS",
}


PGBOUNCER = MANIFESTS / "pgbouncer"


def pgbouncer_documents() -> list[dict[str, Any]]:
    found = []
    for path in sorted(PGBOUNCER.glob("*.yaml")):
        found += [d for d in yaml.safe_load_all(path.read_text())]
    return found


class TestPgBouncerManifests:
    """The optional PgBouncer: its own Deployment, Service and Secret, in transaction mode."""

    def test_objects_are_named_for_the_app_and_apart_from_the_api(self) -> None:
        kinds = sorted(d["kind"] for d in pgbouncer_documents())
        assert kinds == ["Deployment", "Secret", "Service"]
        for document in pgbouncer_documents():
            assert document["metadata"]["name"] == f"{APP_NAME}-pgbouncer"
        # The API's Service must never select PgBouncer's pods, nor the reverse.
        api_selector = manifest("Service")["spec"]["selector"]
        (deployment,) = [d for d in pgbouncer_documents() if d["kind"] == "Deployment"]
        assert not matches(api_selector, deployment["spec"]["template"]["metadata"]["labels"])

    def test_service_reaches_the_pooler_port_in_transaction_mode(self) -> None:
        (deployment,) = [d for d in pgbouncer_documents() if d["kind"] == "Deployment"]
        (service,) = [d for d in pgbouncer_documents() if d["kind"] == "Service"]
        pod = deployment["spec"]["template"]
        assert matches(service["spec"]["selector"], pod["metadata"]["labels"])
        assert matches(deployment["spec"]["selector"]["matchLabels"], pod["metadata"]["labels"])
        (container,) = pod["spec"]["containers"]
        env = {item["name"]: item["value"] for item in container["env"]}
        assert env["POOL_MODE"] == "transaction"
        assert int(env["MAX_PREPARED_STATEMENTS"]) > 0
        (port,) = container["ports"]
        assert int(env["LISTEN_PORT"]) == port["containerPort"]
        assert service["spec"]["ports"][0]["targetPort"] == port["name"]
        assert container["envFrom"] == [{"secretRef": {"name": f"{APP_NAME}-pgbouncer"}}]

    def test_runs_as_non_root_on_a_read_only_root(self) -> None:
        (deployment,) = [d for d in pgbouncer_documents() if d["kind"] == "Deployment"]
        pod = deployment["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        (container,) = pod["containers"]
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
        assert container["resources"]["limits"]["memory"]

    def test_secret_template_holds_placeholders_only(self) -> None:
        (secret,) = [d for d in pgbouncer_documents() if d["kind"] == "Secret"]
        assert "data" not in secret
        for name in ("DB_HOST", "DB_NAME", "DB_USER", "DB_PASSWORD"):
            assert secret["stringData"][name] == "REPLACE-ME", name

    def test_the_api_settings_it_asks_for_exist(self) -> None:
        readme = (MANIFESTS / "README.md").read_text()
        settings = {name.upper() for name in Settings.model_fields}
        names = ("DATABASE_URL", "DATABASE_DIRECT_URL", "DATABASE_POOL_MODE")
        for name in (*names, "DATABASE_POOLER_PREPARED_STATEMENTS"):
            assert name in readme
            assert name in settings, f"{name} is not a setting"
