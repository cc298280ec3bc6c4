//! What the journal takes from a Pod or a Service read from the API server:
//! the few fields of [`bucket::journal_record`], nothing else. A pod's
//! spec (environment variables, commands, volumes) is dropped here, as
//! soon as it arrives: it is never stored, written or logged.

use std::collections::BTreeMap;

use bucket::journal_record::Owner;
use k8s_openapi::api::core::v1::{Pod, Service};

/// A pod as the journal keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodFacts {
    pub uid: String,
    pub namespace: String,
    pub name: String,
    /// Every address of the pod (`status.podIPs`, IPv4 and IPv6), none
    /// while it has no sandbox yet or once it has finished.
    pub ips: Vec<String>,
    pub owner: Option<Owner>,
    pub workload: Option<Owner>,
    pub labels: BTreeMap<String, String>,
    pub host_network: bool,
    pub node: String,
}

/// A Service as the journal keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceFacts {
    pub uid: String,
    pub namespace: String,
    pub name: String,
    /// `spec.clusterIPs`; none for a headless or ExternalName Service.
    pub ips: Vec<String>,
}

/// Which pod labels the journal keeps (`JOURNAL_LABELS`): labels can hold
/// anything a team put there, so only those named are written.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LabelAllowList(Vec<String>);

impl LabelAllowList {
    pub fn new(names: impl IntoIterator<Item = String>) -> Self {
        Self(names.into_iter().filter(|n| !n.is_empty()).collect())
    }

    pub fn names(&self) -> &[String] {
        &self.0
    }

    fn keep(&self, labels: Option<&BTreeMap<String, String>>) -> BTreeMap<String, String> {
        let Some(labels) = labels else {
            return BTreeMap::new();
        };
        self.0
            .iter()
            .filter_map(|name| labels.get(name).map(|v| (name.clone(), v.clone())))
            .collect()
    }
}

impl PodFacts {
    /// The journal's view of `pod`. A pod that has finished (phase
    /// `Succeeded` or `Failed`) holds no address any more: its sandbox is
    /// gone and the CNI may hand the address to another pod, although the
    /// object (and its `status.podIPs`) stays until it is deleted.
    pub fn of(pod: &Pod, labels: &LabelAllowList) -> Self {
        let meta = &pod.metadata;
        let spec = pod.spec.as_ref();
        let status = pod.status.as_ref();
        let finished = status
            .and_then(|s| s.phase.as_deref())
            .is_some_and(|phase| phase == "Succeeded" || phase == "Failed");
        let mut ips: Vec<String> = status
            .and_then(|s| s.pod_ips.as_ref())
            .map(|ips| ips.iter().map(|ip| ip.ip.clone()).collect())
            .unwrap_or_default();
        // Older API servers fill only podIP.
        if ips.is_empty()
            && let Some(ip) = status.and_then(|s| s.pod_ip.clone())
        {
            ips.push(ip);
        }
        ips.retain(|ip| !ip.is_empty());
        ips.dedup();
        if finished {
            ips.clear();
        }
        let owner = meta
            .owner_references
            .as_ref()
            .and_then(|refs| refs.iter().find(|r| r.controller == Some(true)))
            .map(|r| Owner {
                kind: r.kind.clone(),
                name: r.name.clone(),
            });
        let template_hash = meta
            .labels
            .as_ref()
            .and_then(|l| l.get("pod-template-hash"));
        let workload = owner
            .as_ref()
            .and_then(|owner| deployment_of(owner, template_hash.map(String::as_str)));
        Self {
            uid: meta.uid.clone().unwrap_or_default(),
            namespace: meta.namespace.clone().unwrap_or_default(),
            name: meta.name.clone().unwrap_or_default(),
            ips,
            owner,
            workload,
            labels: labels.keep(meta.labels.as_ref()),
            host_network: spec.and_then(|s| s.host_network).unwrap_or(false),
            node: spec.and_then(|s| s.node_name.clone()).unwrap_or_default(),
        }
    }
}

/// The Deployment behind a ReplicaSet, by Kubernetes' naming convention:
/// a Deployment `api` names its ReplicaSets `api-<pod-template-hash>` and
/// labels their pods `pod-template-hash=<hash>`. Reading the ReplicaSet
/// would say for sure, but the journal's role may read pods and services
/// only; a ReplicaSet made by hand with such a name and label would be
/// taken for a Deployment's.
fn deployment_of(owner: &Owner, template_hash: Option<&str>) -> Option<Owner> {
    if owner.kind != "ReplicaSet" {
        return None;
    }
    let hash = template_hash?;
    let name = owner.name.strip_suffix(hash)?.strip_suffix('-')?;
    (!name.is_empty()).then(|| Owner {
        kind: "Deployment".to_owned(),
        name: name.to_owned(),
    })
}

impl ServiceFacts {
    pub fn of(service: &Service) -> Self {
        let meta = &service.metadata;
        let spec = service.spec.as_ref();
        let mut ips: Vec<String> = spec
            .and_then(|s| s.cluster_ips.clone())
            .or_else(|| spec.and_then(|s| s.cluster_ip.clone()).map(|ip| vec![ip]))
            .unwrap_or_default();
        // "None" is how a headless Service says it has no cluster IP.
        ips.retain(|ip| !ip.is_empty() && ip != "None");
        ips.dedup();
        Self {
            uid: meta.uid.clone().unwrap_or_default(),
            namespace: meta.namespace.clone().unwrap_or_default(),
            name: meta.name.clone().unwrap_or_default(),
            ips,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// A pod as `kubectl get pod -o json` shows one, secrets in its env.
    fn pod_json() -> serde_json::Value {
        serde_json::json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": "api-5f7c9d4b8-xk2p9",
                "namespace": "payments",
                "uid": "6d1c2b1e-0000-4000-8000-000000000001",
                "resourceVersion": "12345",
                "labels": {"app": "api", "pod-template-hash": "5f7c9d4b8", "team": "secret-team"},
                "ownerReferences": [{
                    "apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "api-5f7c9d4b8",
                    "uid": "6d1c2b1e-0000-4000-8000-000000000002", "controller": true, "blockOwnerDeletion": true
                }]
            },
            "spec": {
                "nodeName": "ip-10-0-1-7",
                "containers": [{"name": "api", "image": "api:1", "env": [{"name": "DB_PASSWORD", "value": "hunter2"}]}]
            },
            "status": {
                "phase": "Running",
                "podIP": "10.0.3.7",
                "podIPs": [{"ip": "10.0.3.7"}, {"ip": "fd00::3:7"}]
            }
        })
    }

    #[test]
    fn a_pod_keeps_its_addresses_owner_deployment_and_allowed_labels_only() {
        let pod: Pod = serde_json::from_value(pod_json()).unwrap();
        let facts = PodFacts::of(&pod, &LabelAllowList::new(["app".to_owned()]));
        assert_eq!(facts.ips, ["10.0.3.7", "fd00::3:7"]);
        assert_eq!(facts.owner.as_ref().unwrap().name, "api-5f7c9d4b8");
        assert_eq!(
            facts.workload,
            Some(Owner {
                kind: "Deployment".into(),
                name: "api".into()
            })
        );
        assert_eq!(
            facts.labels,
            BTreeMap::from([("app".to_owned(), "api".to_owned())])
        );
        assert_eq!(facts.node, "ip-10-0-1-7");
        assert!(!format!("{facts:?}").contains("hunter2"));
    }

    #[test]
    fn a_finished_pod_holds_no_address() {
        let mut json = pod_json();
        json["status"]["phase"] = "Succeeded".into();
        let pod: Pod = serde_json::from_value(json).unwrap();
        assert!(
            PodFacts::of(&pod, &LabelAllowList::default())
                .ips
                .is_empty()
        );
    }

    #[test]
    fn a_replicaset_not_named_for_its_hash_has_no_deployment() {
        let owner = Owner {
            kind: "ReplicaSet".into(),
            name: "handmade".into(),
        };
        assert_eq!(deployment_of(&owner, Some("5f7c")), None);
        assert_eq!(deployment_of(&owner, None), None);
    }

    #[test]
    fn a_headless_service_has_no_cluster_ip() {
        let service: Service = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "db", "namespace": "payments", "uid": "u"},
            "spec": {"clusterIP": "None", "clusterIPs": ["None"]}
        }))
        .unwrap();
        assert!(ServiceFacts::of(&service).ips.is_empty());
    }
}
