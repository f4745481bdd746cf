#!/usr/bin/env python3
"""Checks a multi-document YAML render of charts/highpress (or deploy/operator/install.yaml).

Usage: check_rendered_manifests.py --crd CRD.yaml RENDERED.yaml

For every document:
  * built-in kinds are validated with `python3 -m kubernetes_validate --strict` (the official
    Kubernetes JSON schemas, unknown fields rejected). A built-in kind the validator has no
    schema for is a failure, not a warning.
  * CRD-typed kinds have no official schema, so kubernetes-validate only warns and passes them.
    They are listed as skipped by it and checked here instead:
      - CounterCluster: against the openAPIV3Schema of the committed CRD (jsonschema; types,
        enums, ranges, patterns, required fields, unknown fields rejected). CEL rules
        (x-kubernetes-validations) are NOT evaluated: only a real API server does that.
      - ServiceMonitor: spec.selector must select a Service in the same render, and every
        endpoint port must be a named port of that Service.
      - PrometheusRule: spec.groups is a list of {name, rules}, every rule has `expr` and
        exactly one of `alert` / `record`, group names are unique.
    Any other CRD-typed kind is a failure (nothing would check it).
  * every workload (Deployment, StatefulSet, DaemonSet, Job, CronJob, Pod) meets the
    "restricted" Pod Security Standard, and every long-running container has liveness and
    readiness probes and resource requests plus a memory limit.
  * no RBAC rule has `*` in apiGroups, resources, verbs or resourceNames; verbs are sorted and
    each (apiGroups, resources) set appears once per role.

Prints one `ok - ...` or `not ok - ...` line per check and exits 1 when any failed.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import jsonschema
import yaml

CRD_GROUPS = {"highpress.dev", "monitoring.coreos.com"}
WORKLOAD_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob", "Pod"}
RBAC_ROLE_KINDS = {"ClusterRole", "Role"}
RESTRICTED_CAPABILITIES_ADD = {"NET_BIND_SERVICE"}


class Report:
    def __init__(self) -> None:
        self.failed = 0
        self.passed = 0

    def check(self, ok: bool, what: str, detail: str = "") -> None:
        if ok:
            self.passed += 1
            print(f"ok - {what}")
        else:
            self.failed += 1
            print(f"not ok - {what}" + (f": {detail}" if detail else ""))

    def note(self, text: str) -> None:
        print(f"# {text}")


def group_of(doc: dict) -> str:
    api_version = doc.get("apiVersion", "")
    return api_version.split("/")[0] if "/" in api_version else ""


def ident(doc: dict) -> str:
    meta = doc.get("metadata") or {}
    ns = meta.get("namespace")
    name = meta.get("name", "?")
    return f"{doc.get('kind', '?')} {ns + '/' if ns else ''}{name}"


# --- kubernetes-validate ------------------------------------------------------------------------


def validate_builtin(docs: list[dict], report: Report) -> None:
    for doc in docs:
        with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
            yaml.safe_dump(doc, f)
            path = f.name
        try:
            out = subprocess.run(
                [sys.executable, "-m", "kubernetes_validate", "--strict", "--quiet", path],
                capture_output=True,
                text=True,
                check=False,
            )
        finally:
            Path(path).unlink()
        text = (out.stdout + out.stderr).strip()
        no_schema = "Couldn't find schema" in text
        report.check(
            out.returncode == 0 and not no_schema,
            f"{ident(doc)} validates with kubernetes-validate --strict",
            text.replace(path, "<doc>"),
        )


# --- CounterCluster against the CRD ------------------------------------------------------------


def crd_schema_to_jsonschema(node: object) -> object:
    """OpenAPI v3 structural schema -> JSON Schema: nullable, int-or-string, unknown fields."""
    if isinstance(node, list):
        return [crd_schema_to_jsonschema(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: crd_schema_to_jsonschema(v) for k, v in node.items() if not k.startswith("x-kubernetes-")}
    out.pop("nullable", None)
    if node.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if node.get("nullable") and "type" in out:
        out["type"] = [out["type"], "null"]
    preserve = node.get("x-kubernetes-preserve-unknown-fields")
    if "properties" in node and "additionalProperties" not in node and not preserve:
        out["additionalProperties"] = False
    return out


def load_counter_cluster_schema(crd_path: Path) -> dict:
    crd = yaml.safe_load(crd_path.read_text())
    version = next(v for v in crd["spec"]["versions"] if v.get("storage"))
    schema = crd_schema_to_jsonschema(version["schema"]["openAPIV3Schema"])
    # The API server owns apiVersion/kind/metadata; check them for shape only.
    schema["properties"].update(
        apiVersion={"type": "string"}, kind={"const": "CounterCluster"}, metadata={"type": "object"}
    )
    schema["required"] = sorted({"apiVersion", "kind", "metadata", *schema.get("required", [])})
    return schema


def check_counter_cluster(doc: dict, schema: dict, report: Report) -> None:
    validator = jsonschema.Draft7Validator(schema)
    errors = sorted(validator.iter_errors(doc), key=lambda e: list(e.absolute_path))
    detail = "; ".join(
        f"{'.'.join(str(p) for p in e.absolute_path) or '<root>'}: {e.message}" for e in errors
    )
    report.check(not errors, f"{ident(doc)} validates against the CRD's openAPIV3Schema", detail)
    report.check(
        doc.get("apiVersion") == "highpress.dev/v1alpha1",
        f"{ident(doc)} has apiVersion highpress.dev/v1alpha1",
        str(doc.get("apiVersion")),
    )


# --- ServiceMonitor and PrometheusRule ---------------------------------------------------------


def check_service_monitor(doc: dict, services: list[dict], report: Report) -> None:
    spec = doc.get("spec") or {}
    match = ((spec.get("selector") or {}).get("matchLabels")) or {}
    ns_names = ((spec.get("namespaceSelector") or {}).get("matchNames")) or [
        (doc.get("metadata") or {}).get("namespace")
    ]
    selected = [
        s
        for s in services
        if match
        and (s.get("metadata") or {}).get("namespace") in ns_names
        and all(((s.get("metadata") or {}).get("labels") or {}).get(k) == v for k, v in match.items())
    ]
    report.check(len(selected) == 1, f"{ident(doc)} selects exactly one Service of this render", f"{len(selected)} selected")
    endpoints = spec.get("endpoints") or []
    port_names = {p.get("name") for s in selected for p in (s.get("spec") or {}).get("ports") or []}
    bad = [e.get("port") for e in endpoints if e.get("port") not in port_names]
    report.check(bool(endpoints) and not bad, f"{ident(doc)} endpoints use named ports of that Service", f"unknown ports {bad}")


def check_prometheus_rule(doc: dict, report: Report) -> None:
    groups = (doc.get("spec") or {}).get("groups")
    problems = []
    if not isinstance(groups, list) or not groups:
        problems.append("spec.groups must be a non-empty list")
        groups = []
    names = [g.get("name") for g in groups if isinstance(g, dict)]
    if len(names) != len(set(names)):
        problems.append(f"duplicate group names {names}")
    for g in groups:
        if not isinstance(g, dict) or not g.get("name") or not isinstance(g.get("rules"), list):
            problems.append(f"group {g!r} needs name and rules")
            continue
        for r in g["rules"]:
            if not isinstance(r, dict) or not r.get("expr") or (("alert" in r) == ("record" in r)):
                problems.append(f"group {g['name']}: rule {r!r} needs expr and one of alert/record")
    report.check(not problems, f"{ident(doc)} is a well-formed PrometheusRule", "; ".join(problems))


# --- Pod security, probes, resources -----------------------------------------------------------


def pod_spec_of(doc: dict) -> dict:
    kind = doc["kind"]
    spec = doc.get("spec") or {}
    if kind == "Pod":
        return spec
    if kind == "CronJob":
        return spec["jobTemplate"]["spec"]["template"]["spec"]
    return spec["template"]["spec"]


def check_workload(doc: dict, report: Report) -> None:
    pod = pod_spec_of(doc)
    psc = pod.get("securityContext") or {}
    containers = (pod.get("initContainers") or []) + (pod.get("containers") or [])
    problems = []
    for flag in ("hostNetwork", "hostPID", "hostIPC"):
        if pod.get(flag):
            problems.append(f"{flag} is set")
    for vol in pod.get("volumes") or []:
        if "hostPath" in vol:
            problems.append(f"volume {vol.get('name')} is a hostPath")
    for c in containers:
        sc = c.get("securityContext") or {}
        name = c.get("name")

        def eff(key: str, sc: dict = sc) -> object:
            return sc.get(key, psc.get(key))

        if eff("runAsNonRoot") is not True:
            problems.append(f"{name}: runAsNonRoot is not true")
        if eff("runAsUser") in (0, None):
            problems.append(f"{name}: runAsUser is not a fixed non-zero UID")
        if sc.get("allowPrivilegeEscalation") is not False:
            problems.append(f"{name}: allowPrivilegeEscalation is not false")
        if sc.get("readOnlyRootFilesystem") is not True:
            problems.append(f"{name}: readOnlyRootFilesystem is not true")
        if sc.get("privileged"):
            problems.append(f"{name}: privileged")
        caps = sc.get("capabilities") or {}
        if "ALL" not in (caps.get("drop") or []):
            problems.append(f"{name}: capabilities.drop lacks ALL")
        if set(caps.get("add") or []) - RESTRICTED_CAPABILITIES_ADD:
            problems.append(f"{name}: adds capabilities {caps.get('add')}")
        seccomp = (eff("seccompProfile") or {}).get("type")
        if seccomp not in ("RuntimeDefault", "Localhost"):
            problems.append(f"{name}: seccompProfile is {seccomp!r}")
        for port in c.get("ports") or []:
            if port.get("hostPort"):
                problems.append(f"{name}: hostPort {port['hostPort']}")
    report.check(not problems, f"{ident(doc)} meets the restricted Pod Security Standard", "; ".join(problems))

    problems = []
    long_running = doc["kind"] in {"Deployment", "StatefulSet", "DaemonSet"}
    for c in pod.get("containers") or []:
        name = c.get("name")
        if long_running:
            for probe in ("livenessProbe", "readinessProbe"):
                if not c.get(probe):
                    problems.append(f"{name}: no {probe}")
        res = c.get("resources") or {}
        if not (res.get("requests") or {}).get("cpu") or not (res.get("requests") or {}).get("memory"):
            problems.append(f"{name}: no cpu and memory requests")
        if not (res.get("limits") or {}).get("memory"):
            problems.append(f"{name}: no memory limit")
    report.check(not problems, f"{ident(doc)} has probes and resources on every container", "; ".join(problems))


# --- RBAC --------------------------------------------------------------------------------------


def check_rbac(doc: dict, report: Report) -> None:
    problems = []
    seen = set()
    for i, rule in enumerate(doc.get("rules") or []):
        for field in ("apiGroups", "resources", "verbs", "resourceNames", "nonResourceURLs"):
            if any("*" in str(v) for v in rule.get(field) or []):
                problems.append(f"rule {i}: wildcard in {field}")
        verbs = rule.get("verbs") or []
        if verbs != sorted(verbs) or len(verbs) != len(set(verbs)):
            problems.append(f"rule {i}: verbs {verbs} not sorted and unique")
        key = (tuple(rule.get("apiGroups") or []), tuple(rule.get("resources") or []))
        if key in seen:
            problems.append(f"rule {i}: {key} appears twice")
        seen.add(key)
    report.check(not problems, f"{ident(doc)} has no wildcards and one rule per resource set", "; ".join(problems))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--crd", type=Path, required=True, help="the committed CounterCluster CRD")
    parser.add_argument("rendered", type=Path)
    args = parser.parse_args()

    docs = [d for d in yaml.safe_load_all(args.rendered.read_text()) if d]
    report = Report()
    report.check(bool(docs), f"{args.rendered} has documents", "empty render")
    builtin = [d for d in docs if group_of(d) not in CRD_GROUPS]
    custom = [d for d in docs if group_of(d) in CRD_GROUPS]
    validate_builtin(builtin, report)

    services = [d for d in docs if d.get("kind") == "Service" and d.get("apiVersion") == "v1"]
    cc_schema = load_counter_cluster_schema(args.crd)
    for doc in custom:
        kind = doc.get("kind")
        if kind == "CounterCluster":
            how = "the CRD's openAPIV3Schema (CEL rules not evaluated)"
            check_counter_cluster(doc, cc_schema, report)
        elif kind == "ServiceMonitor":
            how = "selector and port checks against this render's Services"
            check_service_monitor(doc, services, report)
        elif kind == "PrometheusRule":
            how = "a structural check of its rule groups"
            check_prometheus_rule(doc, report)
        else:
            how = "nothing"
            report.check(False, f"{ident(doc)} is a CRD kind this checker knows", "add a check for it")
        report.note(f"skipped by kubernetes-validate (CRD-typed, no official schema): {ident(doc)}; checked by {how}")

    for doc in docs:
        if doc.get("kind") in WORKLOAD_KINDS:
            check_workload(doc, report)
        if doc.get("kind") in RBAC_ROLE_KINDS:
            check_rbac(doc, report)

    print(f"# {args.rendered}: {report.passed} ok, {report.failed} not ok")
    return 1 if report.failed else 0


if __name__ == "__main__":
    sys.exit(main())
