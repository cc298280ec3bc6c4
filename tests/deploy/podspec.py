"""Read what the rendered manifests give the two containers, and check it.

Used by tests/deploy/validate-manifests and tests/deploy/image-and-pod:

  podspec.py lint RENDERED VARIANT      the pod's invariants (below)
  podspec.py argv RENDERED CONTAINER    command + args, NUL-separated
  podspec.py env RENDERED CONTAINER     KEY=VALUE, NUL-separated: envFrom
                                        ConfigMaps and env resolved, the
                                        downward API faked
  podspec.py to-pod RENDERED --image IMAGE --spool HOSTDIR [--set K=V]...
                                        the pod template as a plain Pod that
                                        podman 4.3 `kube play` runs
  podspec.py probes RENDERED CONTAINER  the probes' URLs on 127.0.0.1
  podspec.py spool-size RENDERED        MAX_SPOOL_MB and the sizeLimit (MiB)
                                        of the volume the uploader mounts at
                                        SPOOL_DIR
  podspec.py exec-probe RENDERED CONTAINER PROBE
                                        the exec command of PROBE
                                        (livenessProbe, readinessProbe),
                                        NUL-separated
  podspec.py exceptions FILE            the checkov IDs of FILE; fails on an
                                        entry without a justification
  podspec.py checkov REPORT FILE        fails unless the checks that failed
                                        in REPORT are exactly FILE's entries
  podspec.py policy JSON BUCKET PREFIX ACCOUNT
                                        the IAM policy is least privilege and
                                        holds only while ACCOUNT owns BUCKET

The lint holds what checkov does not know about this project: the two users
and the shared group, the capture container's file-capability needs, the
native sidecar, the settings that must agree across objects (spool size,
drain time, metrics port), the bucket owner, and that the capture container
gets no AWS credentials under IRSA or Pod Identity.
"""

import csv
import json
import re
import sys

import yaml

WORKLOAD_KINDS = ("DaemonSet", "Deployment")
CLUSTER_SCOPED = ("Namespace", "ClusterRole", "ClusterRoleBinding")
# The journal's rights, exactly: read pods and Services, nothing else.
JOURNAL_RULES = [{"apiGroups": [""], "resources": ["pods", "services"], "verbs": ["get", "list", "watch"]}]
SA_TOKEN_PATH = "/var/run/secrets/kubernetes.io/serviceaccount"
FAKE_DOWNWARD = {
    "spec.nodeName": "ip-10-0-0-1.test.internal",
    "metadata.name": "s3-tcpdump-test",
    "metadata.namespace": "s3-tcpdump",
}


class Failure(Exception):
    pass


# What EKS's pod identity webhook (aws/amazon-eks-pod-identity-webhook, run by
# EKS for every pod) adds to each container, init containers included, when
# the service account has a role: IRSA (the role-arn annotation) or a Pod
# Identity association. Containers named in the pod's
# eks.amazonaws.com/skip-containers annotation (comma-separated, read as one
# CSV record) are left alone, in both modes.
SKIP_CONTAINERS = "eks.amazonaws.com/skip-containers"
WEBHOOK_ENV = {
    "irsa": {"AWS_ROLE_ARN": "arn:aws:iam::111122223333:role/s3-tcpdump",
             "AWS_WEB_IDENTITY_TOKEN_FILE": "/var/run/secrets/eks.amazonaws.com/serviceaccount/token"},
    "pod-identity": {
        "AWS_CONTAINER_CREDENTIALS_FULL_URI": "http://169.254.170.23/v1/credentials",
        "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE":
            "/var/run/secrets/pods.eks.amazonaws.com/serviceaccount/eks-pod-identity-token"},
}
WEBHOOK_MOUNT = {"irsa": "aws-iam-token", "pod-identity": "eks-pod-identity-token"}
# Variables that hand a process AWS credentials, or the means to get them.
CREDENTIAL_ENV = {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
                  "AWS_PROFILE", "AWS_SHARED_CREDENTIALS_FILE", "AWS_CONFIG_FILE"} \
    | set(WEBHOOK_ENV["irsa"]) | set(WEBHOOK_ENV["pod-identity"])


def skipped_containers(template_metadata):
    value = (template_metadata.get("annotations") or {}).get(SKIP_CONTAINERS)
    if not value:
        return set()
    return {name.strip() for name in next(csv.reader([value]), [])}


def webhook_mutation(template, mode):
    """The containers' env names and mount names after the webhook, by name."""
    skipped = skipped_containers(template.get("metadata", {}))
    spec = template["spec"]
    out = {}
    for c in spec.get("initContainers", []) + spec.get("containers", []):
        env = {e["name"] for e in c.get("env", [])}
        mounts = {m["name"] for m in c.get("volumeMounts", [])}
        if c["name"] not in skipped:
            env |= set(WEBHOOK_ENV[mode])
            mounts.add(WEBHOOK_MOUNT[mode])
        out[c["name"]] = (env, mounts)
    return out


def load(path):
    with open(path, encoding="utf-8") as f:
        return [d for d in yaml.safe_load_all(f) if d]


def workload(docs):
    found = [d for d in docs if d["kind"] in WORKLOAD_KINDS]
    if len(found) != 1:
        raise Failure(f"expected one DaemonSet or Deployment, found {len(found)}")
    return found[0]


def pod_spec(docs):
    return workload(docs)["spec"]["template"]["spec"]


def container(spec, name):
    for c in spec.get("initContainers", []) + spec.get("containers", []):
        if c["name"] == name:
            return c
    raise Failure(f"no container named {name}")


def volume_named(spec, name):
    return next((v for v in spec.get("volumes", []) if v["name"] == name), {})


def config_maps(docs):
    return {d["metadata"]["name"]: d.get("data", {}) for d in docs if d["kind"] == "ConfigMap"}


def resolve_env(docs, c):
    maps = config_maps(docs)
    env = {}
    for source in c.get("envFrom", []):
        name = source["configMapRef"]["name"]
        if name not in maps:
            raise Failure(f"{c['name']}: envFrom names a ConfigMap that is not rendered: {name}")
        env.update(maps[name])
    for e in c.get("env", []):
        if "value" in e:
            env[e["name"]] = e["value"]
        elif "fieldRef" in e.get("valueFrom", {}):
            env[e["name"]] = FAKE_DOWNWARD[e["valueFrom"]["fieldRef"]["fieldPath"]]
        elif "configMapKeyRef" in e.get("valueFrom", {}):
            ref = e["valueFrom"]["configMapKeyRef"]
            env[e["name"]] = maps[ref["name"]][ref["key"]]
        else:
            raise Failure(f"{c['name']}: env {e['name']} has a source this test cannot fake")
    return env


def spool_size(docs):
    """(MAX_SPOOL_MB, sizeLimit in MiB) of the uploader's spool volume, found
    by the name its SPOOL_DIR mount gives, never by position."""
    spec = pod_spec(docs)
    up = container(spec, "uploader")
    env = resolve_env(docs, up)
    mounts = [m for m in up.get("volumeMounts", []) if m["mountPath"] == env.get("SPOOL_DIR")]
    if len(mounts) != 1:
        raise Failure("the uploader mounts no volume at SPOOL_DIR")
    vols = [v for v in spec.get("volumes", []) if v["name"] == mounts[0]["name"]]
    limit = vols[0].get("emptyDir", {}).get("sizeLimit") if vols else None
    if limit is None:
        raise Failure(f"the spool volume {mounts[0]['name']} is not an emptyDir with a sizeLimit")
    return int(env["MAX_SPOOL_MB"]), quantity_mib(limit)


def quantity_mib(q):
    units = {"Ki": 1 / 1024, "Mi": 1, "Gi": 1024, "Ti": 1024 * 1024,
             "k": 1e3 / 2**20, "M": 1e6 / 2**20, "G": 1e9 / 2**20}
    m = re.fullmatch(r"(\d+)([KMGT]i|[kMG])?", str(q))
    if not m:
        raise Failure(f"cannot read the quantity {q}")
    return int(m.group(1)) * units.get(m.group(2), 1 / 2**20)


def lint(docs, variant):
    problems = []

    def expect(cond, what):
        if not cond:
            problems.append(what)

    kinds = {(d["kind"], d["metadata"]["name"]) for d in docs}
    expect(("Namespace", "s3-tcpdump") in kinds, "namespace s3-tcpdump is rendered")
    expect(("ServiceAccount", "s3-tcpdump-service-account") in kinds,
           "service account s3-tcpdump-service-account is rendered")
    for d in docs:
        if d["kind"] not in CLUSTER_SCOPED:
            expect(d["metadata"].get("namespace") == "s3-tcpdump",
                   f"{d['kind']} {d['metadata']['name']} is in namespace s3-tcpdump")

    w = workload(docs)
    expect(w["kind"] == ("Deployment" if variant == "node" else "DaemonSet"),
           f"the {variant} variant renders the right kind")
    spec = w["spec"]["template"]["spec"]
    expect(spec.get("hostNetwork") is True, "hostNetwork: true")
    expect(spec.get("dnsPolicy") == "ClusterFirstWithHostNet", "dnsPolicy: ClusterFirstWithHostNet")
    expect(spec.get("serviceAccountName") == "s3-tcpdump-service-account", "serviceAccountName")
    expect(spec.get("automountServiceAccountToken") is False, "no Kubernetes API token mounted")
    psc = spec.get("securityContext", {})
    expect(psc.get("fsGroup") == 2000, "pod fsGroup 2000 (the spool's group)")
    expect(psc.get("seccompProfile", {}).get("type") == "RuntimeDefault", "pod seccomp RuntimeDefault")

    inits = spec.get("initContainers", [])
    mains = spec.get("containers", [])
    expect([c["name"] for c in inits] == ["uploader", "journal"],
           "the init containers are the uploader, then the journal (stopped before the uploader)")
    expect([c["name"] for c in mains] == ["capture"], "capture is the one container")
    up, cap = container(spec, "uploader"), container(spec, "capture")
    jour = container(spec, "journal")
    lint_journal(docs, spec, jour, cap, expect)
    expect(up.get("restartPolicy") == "Always", "uploader is a native sidecar (restartPolicy: Always)")
    expect(up.get("command") == ["uploader"], "uploader runs `uploader`")
    expect(cap.get("command") == ["launcher"], "capture runs `launcher`")
    expect(up["image"] == cap["image"], "both containers run the same image")

    usc, csc = up.get("securityContext", {}), cap.get("securityContext", {})
    expect(usc.get("runAsUser") == 1001 and usc.get("runAsGroup") == 2000, "uploader runs as 1001:2000")
    expect(csc.get("runAsUser") == 1000 and csc.get("runAsGroup") == 2000, "capture runs as 1000:2000")
    for name, sc in (("uploader", usc), ("capture", csc)):
        expect(sc.get("runAsNonRoot") is True, f"{name} runAsNonRoot")
        expect(sc.get("readOnlyRootFilesystem") is True, f"{name} readOnlyRootFilesystem")
        expect(sc.get("capabilities", {}).get("drop") == ["ALL"], f"{name} drops ALL capabilities")
        expect(sc.get("seccompProfile", {}).get("type") == "RuntimeDefault", f"{name} seccomp RuntimeDefault")
    expect(usc.get("allowPrivilegeEscalation") is False, "uploader allowPrivilegeEscalation: false")
    expect(not usc.get("capabilities", {}).get("add"), "uploader adds no capability")
    # The drift the AWS sample suffered: `false` sets no_new_privs, and the
    # kernel then ignores tcpdump's file capabilities.
    expect(csc.get("allowPrivilegeEscalation") is True,
           "capture allowPrivilegeEscalation: true (file capabilities need it)")
    expect(csc.get("capabilities", {}).get("add", []) == ["NET_RAW"],
           "capture adds exactly NET_RAW (NET_ADMIN is not needed)")

    uenv, cenv = resolve_env(docs, up), resolve_env(docs, cap)
    owner = str(uenv.get("S3_EXPECTED_BUCKET_OWNER", ""))
    expect(re.fullmatch(r"\d{12}", owner) is not None,
           f"uploader S3_EXPECTED_BUCKET_OWNER is a 12-digit account id (got {owner!r})")
    for var, path in (("NODE_NAME", "spec.nodeName"), ("POD_NAME", "metadata.name"),
                      ("POD_NAMESPACE", "metadata.namespace")):
        refs = [e for e in up.get("env", []) if e["name"] == var]
        expect(len(refs) == 1 and refs[0].get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == path,
               f"uploader {var} from the downward API ({path})")
    spool_dir = uenv.get("SPOOL_DIR")
    expect(spool_dir is not None and spool_dir == cenv.get("SPOOL_DIR"), "both containers get one SPOOL_DIR")
    vols = {v["name"]: v for v in spec.get("volumes", [])}
    for name, c in (("uploader", up), ("capture", cap)):
        mounts = [m for m in c.get("volumeMounts", []) if m["mountPath"] == spool_dir]
        expect(len(mounts) == 1 and "emptyDir" in vols.get(mounts[0]["name"], {}),
               f"{name} mounts the spool emptyDir at SPOOL_DIR")
        res = c.get("resources", {})
        expect("cpu" in res.get("requests", {}) and "memory" in res.get("requests", {})
               and "memory" in res.get("limits", {}), f"{name} has cpu/memory requests and a memory limit")
    if "MAX_SPOOL_MB" in uenv:
        budget, limit = spool_size(docs)
        expect(limit > budget, f"spool sizeLimit ({limit} MiB) above MAX_SPOOL_MB ({budget})")
    drain = int(uenv.get("DRAIN_TIMEOUT_SECONDS", 60))
    expect(spec.get("terminationGracePeriodSeconds", 30) > drain,
           f"terminationGracePeriodSeconds above DRAIN_TIMEOUT_SECONDS ({drain})")

    host, port = uenv.get("METRICS_ADDR", "0.0.0.0:9090").rsplit(":", 1)
    port = int(port)
    ports = {p["name"]: p["containerPort"] for p in up.get("ports", [])}
    expect(ports.get("metrics") == port, f"uploader containerPort 'metrics' equals METRICS_ADDR's port {port}")
    launcher_port = int(uenv.get("LAUNCHER_METRICS_ADDR", "0.0.0.0:9478").rsplit(":", 1)[1])
    cap_ports = {p["name"]: p["containerPort"] for p in container(spec, "capture").get("ports", [])}
    expect(cap_ports.get("capture-metrics") == launcher_port,
           f"capture containerPort 'capture-metrics' equals LAUNCHER_METRICS_ADDR's port {launcher_port}")
    expect(launcher_port != port, "the launcher's and the uploader's metrics ports differ")
    # On loopback (manifests/admin-loopback) the kubelet's HTTP probes, sent
    # to the node's address, would find nothing: the uploader probes itself.
    loopback = host in ("127.0.0.1", "[::1]")
    for probe, path, route in (("livenessProbe", "/healthz", "live"), ("readinessProbe", "/readyz", "ready")):
        get = up.get(probe, {}).get("httpGet", {})
        command = up.get(probe, {}).get("exec", {}).get("command")
        if loopback:
            expect(command == ["uploader", "probe", route] and not get,
                   f"admin port on loopback: uploader {probe} is exec `uploader probe {route}`")
        else:
            expect(get.get("path") == path and get.get("port") in ("metrics", port),
                   f"uploader {probe} GET {path} on the metrics port")
    expect(spec.get("terminationGracePeriodSeconds", 0) <= 300, "grace period stays reasonable")
    expect(cap.get("livenessProbe", {}).get("exec", {}).get("command") == ["launcher", "--probe"],
           "capture livenessProbe is exec `launcher --probe` (a stalled tcpdump restarts the container)")

    # The split of capture privileges from S3 credentials, the reason for two
    # containers: the capture container gets no credentials, whatever the
    # binding, and holds no token of its own.
    template = w["spec"]["template"]
    skipped = skipped_containers(template.get("metadata", {}))
    expect(skipped == {"capture", "journal"},
           f"pod annotation {SKIP_CONTAINERS}: capture and journal, nothing else "
           f"(got {sorted(skipped)})")
    for mode in WEBHOOK_ENV:
        mutated = webhook_mutation(template, mode)
        jour_env, jour_mounts = mutated["journal"]
        expect(not jour_env & CREDENTIAL_ENV and WEBHOOK_MOUNT[mode] not in jour_mounts,
               f"{mode}: the journal container gets no AWS credentials")
        cap_env, cap_mounts = mutated["capture"]
        up_env, up_mounts = mutated["uploader"]
        expect(not cap_env & CREDENTIAL_ENV and WEBHOOK_MOUNT[mode] not in cap_mounts,
               f"{mode}: the capture container gets no AWS credentials")
        expect(set(WEBHOOK_ENV[mode]) <= up_env and WEBHOOK_MOUNT[mode] in up_mounts,
               f"{mode}: the uploader gets the role")
    expect(not set(cenv) & CREDENTIAL_ENV,
           f"the capture container's settings hold no AWS credentials ({sorted(set(cenv) & CREDENTIAL_ENV)})")
    projected = {v["name"] for v in spec.get("volumes", []) if "projected" in v}
    expect(not {m["name"] for m in cap.get("volumeMounts", [])} & projected,
           "the capture container mounts no projected (token) volume")

    tolerations = spec.get("tolerations", [])
    expect({"operator": "Exists"} in tolerations, "tolerates every taint (the user chose the nodes)")
    if variant == "node":
        expect(w["spec"].get("replicas") == 1, "node variant: one replica")
        expect("kubernetes.io/hostname" in spec.get("nodeSelector", {}), "node variant: nodeSelector hostname")
    if variant == "node-set":
        # A DaemonSet: one pod per labelled node, following the label.
        required = (spec.get("affinity", {}).get("nodeAffinity", {})
                    .get("requiredDuringSchedulingIgnoredDuringExecution", {}))
        expressions = [e for t in required.get("nodeSelectorTerms", []) for e in t.get("matchExpressions", [])]
        expect(len(expressions) == 1 and expressions[0].get("operator") == "In"
               and len(expressions[0].get("values", [])) == 1,
               "node-set variant: required node affinity on one label value")
        expect("replicas" not in w["spec"], "node-set variant: no replica count")
    if w["kind"] == "Deployment":
        expect(w["spec"].get("strategy", {}).get("type") == "Recreate",
               "Deployment strategy Recreate (host ports, one pod per node)")
    if problems:
        raise Failure("; ".join(f"not met: {p}" for p in problems))


def lint_journal(docs, spec, jour, cap, expect):
    """The journal container, its token, and the RBAC it holds, strictly."""
    roles = [d for d in docs if d["kind"] == "ClusterRole"]
    bindings = [d for d in docs if d["kind"] == "ClusterRoleBinding"]
    expect(len(roles) == 1 and roles[0]["metadata"]["name"] == "s3-tcpdump-journal"
           and roles[0].get("rules") == JOURNAL_RULES,
           f"one ClusterRole s3-tcpdump-journal: get/list/watch on pods and services, nothing else "
           f"(got {[r.get('rules') for r in roles]})")
    expect(not [d for d in docs if d["kind"] in ("Role", "RoleBinding")], "no namespaced Role or RoleBinding")
    expect(len(bindings) == 1
           and bindings[0].get("roleRef") == {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                                              "name": "s3-tcpdump-journal"}
           and bindings[0].get("subjects") == [{"kind": "ServiceAccount", "name": "s3-tcpdump-service-account",
                                                "namespace": "s3-tcpdump"}],
           "one ClusterRoleBinding of s3-tcpdump-journal to the pod's service account only")
    expect(jour.get("restartPolicy") == "Always", "journal is a native sidecar (restartPolicy: Always)")
    expect(jour.get("command") == ["journal"], "journal runs `journal`")
    expect(jour["image"] == cap["image"], "the journal runs the same image")
    jsc = jour.get("securityContext", {})
    expect(jsc.get("runAsUser") == 1002 and jsc.get("runAsGroup") == 2000, "journal runs as 1002:2000")
    for key, want in (("runAsNonRoot", True), ("readOnlyRootFilesystem", True), ("allowPrivilegeEscalation", False)):
        expect(jsc.get(key) is want, f"journal {key}: {str(want).lower()}")
    expect(jsc.get("capabilities", {}).get("drop") == ["ALL"] and not jsc.get("capabilities", {}).get("add"),
           "journal drops ALL capabilities and adds none")
    refs = [e for e in jour.get("env", []) if e["name"] == "NODE_NAME"]
    expect(len(refs) == 1 and refs[0].get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == "spec.nodeName",
           "journal NODE_NAME from the downward API (spec.nodeName)")
    expect(jour.get("livenessProbe", {}).get("exec", {}).get("command") == ["journal", "--probe"],
           "journal livenessProbe is exec `journal --probe`")
    res = jour.get("resources", {})
    expect("cpu" in res.get("requests", {}) and "memory" in res.get("limits", {}),
           "journal has cpu/memory requests and a memory limit")
    # The service-account token: one projected volume, mounted by the
    # journal only, where in-cluster clients look for it.
    vols = {v["name"]: v for v in spec.get("volumes", [])}
    token_vols = {name for name, v in vols.items()
                  if any("serviceAccountToken" in src for src in v.get("projected", {}).get("sources", []))}
    expect(len(token_vols) == 1, f"one projected service-account token volume (got {sorted(token_vols)})")
    for c in spec.get("initContainers", []) + spec.get("containers", []):
        mounted = {m["name"] for m in c.get("volumeMounts", [])} & token_vols
        if c["name"] == "journal":
            mounts = [m for m in c.get("volumeMounts", []) if m["name"] in token_vols]
            expect(len(mounts) == 1 and mounts[0]["mountPath"] == SA_TOKEN_PATH and mounts[0].get("readOnly") is True,
                   f"journal mounts the token read-only at {SA_TOKEN_PATH}")
        else:
            expect(not mounted, f"{c['name']} mounts no Kubernetes API token")


def to_pod(docs, image, spool, sets):
    """The pod template as a Pod podman 4.3 runs: no native sidecars there, so
    the uploader becomes an ordinary container; env is inlined (ConfigMaps and
    the downward API resolved); the emptyDir becomes a host folder prepared
    the way the kubelet prepares it for fsGroup (group 2000, setgid)."""
    spec = pod_spec(docs)
    skipped = skipped_containers(workload(docs)["spec"]["template"].get("metadata", {}))
    out_containers = []
    for c in spec.get("initContainers", []) + spec.get("containers", []):
        env = resolve_env(docs, c)
        # Credentials go where the EKS webhook would put the role: not to
        # the containers the pod tells it to skip.
        env.update({k: v for k, v in sets.items()
                    if k not in CREDENTIAL_ENV or c["name"] not in skipped})
        # On the host network a port is the host's anyway, and podman refuses
        # port mappings there. Podman runs probes from systemd timers, which
        # this machine lacks: the test requests the probe URLs itself.
        c = {k: v for k, v in c.items()
             if k not in ("envFrom", "restartPolicy", "readinessProbe", "livenessProbe", "ports")}
        # There is no API server here and no token to project: the journal
        # runs without one and says so in every segment (stale).
        c["volumeMounts"] = [m for m in c.get("volumeMounts", [])
                             if "projected" not in volume_named(spec, m["name"])]
        c["env"] = [{"name": k, "value": str(v)} for k, v in sorted(env.items())]
        c["image"] = image
        c["imagePullPolicy"] = "Never"
        out_containers.append(c)
    volumes = []
    for v in spec.get("volumes", []):
        if "projected" in v:
            continue
        if "emptyDir" in v:
            volumes.append({"name": v["name"], "hostPath": {"path": spool, "type": "Directory"}})
        else:
            volumes.append(v)
    keep = ("hostNetwork", "securityContext", "terminationGracePeriodSeconds", "dnsPolicy")
    pod_spec_out = {k: spec[k] for k in keep if k in spec}
    pod_spec_out["dnsPolicy"] = "Default"
    pod_spec_out["restartPolicy"] = "Never"
    pod_spec_out["containers"] = out_containers
    pod_spec_out["volumes"] = volumes
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "s3-tcpdump", "labels": {"app.kubernetes.io/name": "s3-tcpdump"}},
            "spec": pod_spec_out}


EXCEPTION_LINE = re.compile(r"^\s*-\s*(CKV2?_[A-Z0-9]+_\d+)\s*(#\s*(.*))?$")


def exceptions(path):
    ids = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            m = EXCEPTION_LINE.match(line)
            if m:
                if not (m.group(3) or "").strip():
                    raise Failure(f"{path}: {m.group(1)} has no justification comment")
                ids.append(m.group(1))
    if not ids:
        raise Failure(f"{path}: no entries")
    return ids


def checkov_compare(report_path, exceptions_path):
    with open(report_path, encoding="utf-8") as f:
        report = json.load(f)
    reports = report if isinstance(report, list) else [report]
    failed = {}
    for r in reports:
        for check in r.get("results", {}).get("failed_checks", []):
            failed.setdefault(check["check_id"], []).append(
                f"{check['file_path']} {check['resource']}: {check['check_name']}")
    allowed = set(exceptions(exceptions_path))
    unexpected = {k: v for k, v in failed.items() if k not in allowed}
    stale = sorted(allowed - set(failed))
    for k, where in sorted(unexpected.items()):
        for w in where:
            print(f"FAILED {k} {w}", file=sys.stderr)
    if stale:
        print(f"exceptions that no longer match a finding (remove them): {' '.join(stale)}", file=sys.stderr)
    if unexpected or stale:
        raise Failure(f"{len(unexpected)} unexpected checkov findings, {len(stale)} stale exceptions")
    total = sum(len(r.get("results", {}).get("passed_checks", [])) for r in reports)
    # Worded so that no test-report reader takes it for a pass/fail count.
    print(f"checkov: {total} checks clean; {sum(map(len, failed.values()))} findings, every one "
          f"on the justified exception list ({len(allowed)} entries)", file=sys.stderr)


def policy(path, bucket, prefix, account):
    with open(path, encoding="utf-8") as f:
        doc = json.load(f)
    actions, resources = set(), set()
    for st in doc["Statement"]:
        if st["Effect"] != "Allow":
            continue
        a = st["Action"]
        r = st["Resource"]
        s3_actions = [x for x in ([a] if isinstance(a, str) else a) if x.startswith("s3:")]
        if s3_actions and st.get("Condition") != {"StringEquals": {"s3:ResourceAccount": account}}:
            raise Failure(f"policy statement {st.get('Sid')} does not hold the bucket to account "
                          f"{account} (s3:ResourceAccount): {st.get('Condition')}")
        for action in s3_actions:
            actions.add(action)
            resources.update([r] if isinstance(r, str) else r)
    want = {"s3:PutObject", "s3:ListMultipartUploadParts"}
    if actions != want:
        raise Failure(f"policy S3 actions are {sorted(actions)}, want exactly {sorted(want)}")
    if resources != {f"arn:aws:s3:::{bucket}/{prefix}/*"}:
        raise Failure(f"policy S3 resources are {sorted(resources)}, want only {bucket}/{prefix}/*")


def main(argv):
    cmd = argv[1]
    if cmd == "lint":
        lint(load(argv[2]), argv[3])
    elif cmd in ("argv", "env"):
        docs = load(argv[2])
        c = container(pod_spec(docs), argv[3])
        items = c.get("command", []) + c.get("args", []) if cmd == "argv" else \
            [f"{k}={v}" for k, v in sorted(resolve_env(docs, c).items())]
        sys.stdout.write("".join(f"{i}\0" for i in items))
    elif cmd == "to-pod":
        args = argv[3:]
        opts = {"--set": []}
        while args:
            flag, value, args = args[0], args[1], args[2:]
            if flag == "--set":
                opts["--set"].append(value)
            else:
                opts[flag] = value
        sets = dict(kv.split("=", 1) for kv in opts["--set"])
        yaml.safe_dump(to_pod(load(argv[2]), opts["--image"], opts["--spool"], sets), sys.stdout, sort_keys=False)
    elif cmd == "probes":
        c = container(pod_spec(load(argv[2])), argv[3])
        ports = {p["name"]: p["containerPort"] for p in c.get("ports", [])}
        for probe in ("livenessProbe", "readinessProbe"):
            get = c[probe]["httpGet"]
            print(f"http://127.0.0.1:{ports.get(get['port'], get['port'])}{get['path']}")
    elif cmd == "spool-size":
        budget, limit = spool_size(load(argv[2]))
        print(budget, int(limit) if limit == int(limit) else limit)
    elif cmd == "exec-probe":
        c = container(pod_spec(load(argv[2])), argv[3])
        sys.stdout.write("".join(f"{w}\0" for w in c[argv[4]]["exec"]["command"]))
    elif cmd == "exceptions":
        print(" ".join(exceptions(argv[2])))
    elif cmd == "checkov":
        checkov_compare(argv[2], argv[3])
    elif cmd == "policy":
        policy(argv[2], argv[3], argv[4], argv[5])
    else:
        raise Failure(f"unknown command {cmd}")


if __name__ == "__main__":
    try:
        main(sys.argv)
    except Failure as e:
        print(f"podspec: {e}", file=sys.stderr)
        sys.exit(1)
