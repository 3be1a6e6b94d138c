"""Validates deploy/kubernetes against the Kubernetes API schemas that
kubernetes-validate bundles (strict: unknown fields are errors), with the
ConfigMap built from moat.toml as kustomize's configMapGenerator builds it.
Also checks what the manifests promise: probes, non-root, read-only root,
no capabilities, no privilege escalation, seccomp, resources. Run by
tests/tests/all/deploy.rs; by hand: python validate_kubernetes.py DIR
"""

import pathlib
import sys

import kubernetes_validate
import yaml

VERSION = "1.33.0"

folder = pathlib.Path(sys.argv[1])
kustomization = yaml.safe_load((folder / "kustomization.yaml").read_text())
files = sorted(p.name for p in folder.glob("*.yaml") if p.name != "kustomization.yaml")
missing = set(kustomization["resources"]) - set(files)
assert not missing, f"the kustomization names missing files: {missing}"
# Every manifest, the Secret's example (kept out of the kustomization) too.
resources = [doc for name in files for doc in yaml.safe_load_all((folder / name).read_text()) if doc]
for generator in kustomization["configMapGenerator"]:
    resources.append({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": generator["name"]},
        "data": {name: (folder / name).read_text() for name in generator["files"]},
    })

for resource in resources:
    kubernetes_validate.validate(resource, VERSION, strict=True)
    print(f"ok {resource['kind']} {resource['metadata']['name']} valid for Kubernetes {VERSION}")

kinds = {r["kind"]: r for r in resources}
assert {"Deployment", "Service", "ConfigMap", "Secret", "HorizontalPodAutoscaler",
        "PodDisruptionBudget", "NetworkPolicy"} <= set(kinds), sorted(kinds)
pod = kinds["Deployment"]["spec"]["template"]["spec"]
container = pod["containers"][0]
assert pod["securityContext"]["runAsNonRoot"] is True
assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
security = container["securityContext"]
assert security["readOnlyRootFilesystem"] is True
assert security["allowPrivilegeEscalation"] is False
assert security["capabilities"]["drop"] == ["ALL"]
assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
assert container["resources"]["requests"] and container["resources"]["limits"]
assert container["lifecycle"]["preStop"], "endpoints drain before SIGTERM"
assert "replicas" not in kinds["Deployment"]["spec"], "the autoscaler owns the replica count"
mounted = {v["configMap"]["name"] for v in pod["volumes"] if "configMap" in v}
assert mounted == {g["name"] for g in kustomization["configMapGenerator"]}, mounted
print("ok the Deployment runs non-root, read-only, without capabilities, with probes and resources")
