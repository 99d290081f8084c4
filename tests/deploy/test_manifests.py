"""deploy/k8s validated offline against the Kubernetes API schemas (kubernetes-validate,
strict: an unknown field is an error), and held to what the service needs: non-root and a
read-only root filesystem everywhere, probes on the health routes, a grace period that
covers the drain, a CronJob for every maintenance job with arguments the command accepts."""

from __future__ import annotations

import argparse

import kubernetes_validate
import pytest
import yaml

from manas360.cli import _parser
from tests.fixtures.server import ROOT

K8S = ROOT / "deploy" / "k8s"
VERSION = kubernetes_validate.latest_version()


def _documents():
    for path in sorted(K8S.glob("*.yaml")):
        if path.name != "kustomization.yaml":
            for document in yaml.safe_load_all(path.read_text()):
                if document:
                    yield path.name, document


def _by_kind(kind: str) -> list[dict]:
    return [document for _, document in _documents() if document["kind"] == kind]


def _pod_specs():
    for _, document in _documents():
        spec = document.get("spec", {})
        template = spec.get("template") or spec.get("jobTemplate", {}).get("spec", {}).get("template")
        if template:
            yield document["metadata"]["name"], template["spec"]


@pytest.mark.parametrize(
    ("name", "document"),
    list(_documents()),
    ids=lambda value: getattr(value, "get", None) and value["metadata"]["name"] or str(value),
)
def test_every_manifest_validates_against_the_kubernetes_schema(name, document):
    kubernetes_validate.validate(document, VERSION, strict=True)


def test_kustomization_lists_every_manifest_but_the_secret_example():
    listed = set(yaml.safe_load((K8S / "kustomization.yaml").read_text())["resources"])
    assert listed == {path.name for path in K8S.glob("*.yaml")} - {"kustomization.yaml", "secret.example.yaml"}


def test_every_pod_runs_unprivileged_on_a_read_only_root_with_secrets_as_files():
    specs = list(_pod_specs())
    assert len(specs) >= 9
    for name, spec in specs:
        assert spec["securityContext"]["runAsNonRoot"] and spec["securityContext"]["runAsUser"] == 10001, name
        for container in spec.get("initContainers", []) + spec["containers"]:
            security = container["securityContext"]
            assert security["readOnlyRootFilesystem"] and not security["allowPrivilegeEscalation"], name
            assert security["capabilities"]["drop"] == ["ALL"], name
            assert container["resources"]["requests"] and container["resources"]["limits"]["memory"], name
            mounts = {mount["mountPath"] for mount in container["volumeMounts"]}
            assert {"/run/secrets/manas360", "/tmp"} <= mounts, name
    config = _by_kind("ConfigMap")[0]["data"]
    secret = _by_kind("Secret")[0]["stringData"]
    for key in secret:
        assert config[f"{key.upper()}_FILE"] == f"/run/secrets/manas360/{key}"


def test_the_deployment_probes_the_health_routes_and_waits_for_the_drain():
    (deployment,) = _by_kind("Deployment")
    spec = deployment["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/health/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/health/live"
    assert container["startupProbe"]["httpGet"]["path"] == "/health/live"
    drain = int(_by_kind("ConfigMap")[0]["data"]["GRACEFUL_SHUTDOWN_TIMEOUT_S"])
    pre_stop = int(container["lifecycle"]["preStop"]["exec"]["command"][-1])
    assert spec["terminationGracePeriodSeconds"] >= pre_stop + drain
    (budget,) = _by_kind("PodDisruptionBudget")
    assert budget["spec"]["selector"]["matchLabels"] == deployment["spec"]["selector"]["matchLabels"]


def test_a_cronjob_for_every_maintenance_job_with_arguments_the_command_accepts():
    parser = _parser()
    scheduled = set()
    for cronjob in _by_kind("CronJob"):
        assert cronjob["spec"]["concurrencyPolicy"] == "Forbid"
        (container,) = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
        args = parser.parse_args(container["args"])
        scheduled.add(args.job)
    maintenance = next(action for action in parser._actions if isinstance(action, argparse._SubParsersAction))
    jobs = next(
        action
        for action in maintenance.choices["maintenance"]._actions
        if isinstance(action, argparse._SubParsersAction)
    )
    # replay-erasures runs after a restore (and `serve` runs it before serving), never on a schedule.
    assert scheduled == set(jobs.choices) - {"all", "replay-erasures"}
    (job,) = _by_kind("Job")
    commands = [
        container["args"]
        for container in job["spec"]["template"]["spec"]["initContainers"]
        + job["spec"]["template"]["spec"]["containers"]
    ]
    assert [command[0] for command in commands] == ["migrate", "seed"]
    for command in commands:
        parser.parse_args(command)


# The commands that write or replay ERASURE_LEDGER_PATH: a pod running one of them without the
# ledger's volume would append to a file its container loses, or replay an empty one.
LEDGER_COMMANDS = {("serve",), ("maintenance", "purge-deleted"), ("maintenance", "replay-erasures")}


def test_every_pod_that_writes_or_replays_the_erasure_ledger_mounts_its_shared_volume():
    ledger = _by_kind("ConfigMap")[0]["data"]["ERASURE_LEDGER_PATH"]
    claims = {claim["metadata"]["name"]: claim for claim in _by_kind("PersistentVolumeClaim")}
    checked = set()
    for name, spec in _pod_specs():
        volumes = {volume["name"]: volume for volume in spec.get("volumes", [])}
        for container in spec.get("initContainers", []) + spec["containers"]:
            command = tuple(container["args"][:2]) if container["args"][0] == "maintenance" else (container["args"][0],)
            if command not in LEDGER_COMMANDS:
                continue
            checked.add(command)
            mounts = [m for m in container["volumeMounts"] if ledger.startswith(m["mountPath"].rstrip("/") + "/")]
            assert len(mounts) == 1 and not mounts[0].get("readOnly"), (name, command)
            claim = claims[volumes[mounts[0]["name"]]["persistentVolumeClaim"]["claimName"]]
            # The API pods and the CronJob run on any node, at the same time.
            assert claim["spec"]["accessModes"] == ["ReadWriteMany"], name
    assert checked == {("serve",), ("maintenance", "purge-deleted")}  # replay-erasures is run by hand
