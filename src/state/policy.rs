//! The rules of a policy change: a document is accepted only if it is HuJSON, a policy
//! tenscale can enforce, and its own `tests` pass in every namespace it would govern. The
//! writer checks all of it inside [`Writer::set_policy`]; `check_policy` runs the same checks
//! for the API's validate endpoints without saving. Which policy governs a namespace (its
//! own, else the organization's) is decided here too, for every rule that depends on it.

use super::store::policies::PolicyScope;
use super::store::{Namespace, PolicyDocument, StoreError, StoreResult};
use super::{events, policy_changed, with_audit, Audit, Writer};
use crate::domain::{NamespaceId, NamespaceName, Node, OrgId};
use crate::policy::{hujson, Policy, PolicyNode};

/// Why a policy document was refused; the text is the user's to read.
#[derive(Debug, thiserror::Error)]
pub enum PolicyRefusal {
    /// Not HuJSON at all, or not a policy: the message names line and column.
    #[error("{0}")]
    Invalid(String),
    /// The policy's own `tests` fail against the nodes of a namespace it would govern.
    #[error("policy test failed in namespace {namespace}: {message}")]
    TestFailed { namespace: NamespaceName, message: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Syntax first (is it HuJSON at all?), then meaning (is it a policy tenscale can enforce?).
pub fn parse_policy(text: &str) -> Result<Policy, PolicyRefusal> {
    let json = hujson::to_json(text).map_err(|e| PolicyRefusal::Invalid(format!("invalid HuJSON: {e}")))?;
    if let Err(e) = serde_json::from_str::<serde_json::Value>(&json) {
        let message = e.to_string();
        let suffix = format!(" at line {} column {}", e.line(), e.column());
        let message = message.strip_suffix(&suffix).unwrap_or(&message);
        let at = format!("line {}, column {}", e.line(), e.column());
        return Err(PolicyRefusal::Invalid(format!("invalid HuJSON: {at}: {message}")));
    }
    Policy::parse(text).map_err(|e| PolicyRefusal::Invalid(format!("invalid policy: {e}")))
}

/// A node as the policy compiler sees it: its addresses, and its tags or else its user (the
/// namespace's login, `namespace@org`).
pub fn policy_node(node: &Node, login: &str) -> PolicyNode {
    let tags = node.tags.to_strings();
    PolicyNode {
        id: node.id,
        addresses: vec![node.ipv4.into(), node.ipv6.into()],
        user: tags.is_empty().then(|| login.to_string()),
        tags,
    }
}

impl Writer {
    /// Replaces the scope's policy with `text`, once [`Writer::check_policy`] accepts it;
    /// the text is stored verbatim (comments and formatting are the admin's).
    pub async fn set_policy(
        &self,
        org_id: OrgId,
        scope: PolicyScope,
        text: &str,
        audit: Option<&Audit<'_, ()>>,
    ) -> Result<PolicyDocument, PolicyRefusal> {
        self.check_policy(org_id, scope, text).await?;
        let records = with_audit(events::records(&[policy_changed(org_id, scope)]), audit, &());
        let doc = self.store.put_policy(org_id, scope, text, &records).await?;
        self.bus.wake().await;
        Ok(doc)
    }

    /// Every check of [`Writer::set_policy`], without saving: the parsed policy if it passes.
    pub async fn check_policy(&self, org_id: OrgId, scope: PolicyScope, text: &str) -> Result<Policy, PolicyRefusal> {
        let policy = parse_policy(text)?;
        if policy.tests.is_empty() {
            return Ok(policy);
        }
        for ns in self.governed_namespaces(org_id, scope).await? {
            self.run_tests(&ns, &policy).await?;
        }
        Ok(policy)
    }

    /// Removes the scope's policy; false when it had none.
    pub async fn delete_policy(
        &self,
        org_id: OrgId,
        scope: PolicyScope,
        audit: Option<&Audit<'_, ()>>,
    ) -> StoreResult<bool> {
        let records = with_audit(events::records(&[policy_changed(org_id, scope)]), audit, &());
        let deleted = self.store.delete_policy(org_id, scope, &records).await?;
        if deleted {
            self.bus.wake().await;
        }
        Ok(deleted)
    }

    /// The policy in force in a namespace: its own, else the organization's; `None` when
    /// neither exists. A stored document was valid when saved; should a newer parser refuse
    /// it, it counts as absent for these checks (the tailnet itself fails closed on it).
    pub async fn policy_in_force(&self, org_id: OrgId, namespace_id: NamespaceId) -> StoreResult<Option<Policy>> {
        let doc = match self.store.policy(org_id, PolicyScope::Namespace(namespace_id)).await? {
            Some(doc) => Some(doc),
            None => self.store.policy(org_id, PolicyScope::Org).await?,
        };
        Ok(doc.and_then(|doc| Policy::parse(&doc.text).ok()))
    }

    /// The organization's own policy (not a namespace's), parsed; `None` without one.
    pub async fn org_policy(&self, org_id: OrgId) -> StoreResult<Option<Policy>> {
        let doc = self.store.policy(org_id, PolicyScope::Org).await?;
        Ok(doc.and_then(|doc| Policy::parse(&doc.text).ok()))
    }

    /// The namespaces a policy of `scope` governs: one namespace, or every namespace of the
    /// organization without a policy of its own.
    async fn governed_namespaces(&self, org_id: OrgId, scope: PolicyScope) -> StoreResult<Vec<Namespace>> {
        if let PolicyScope::Namespace(id) = scope {
            return Ok(vec![self.store.namespace_in_org(org_id, id).await?]);
        }
        let mut governed = Vec::new();
        for ns in self.store.namespaces_of_org(org_id).await? {
            if self.store.policy(org_id, PolicyScope::Namespace(ns.id)).await?.is_none() {
                governed.push(ns);
            }
        }
        Ok(governed)
    }

    async fn run_tests(&self, ns: &Namespace, policy: &Policy) -> Result<(), PolicyRefusal> {
        let org = self.store.org_by_id(ns.org_id).await?;
        let login = format!("{}@{}", ns.name, org.name);
        let nodes: Vec<PolicyNode> =
            self.store.nodes_in_namespace(ns.id).await?.iter().map(|n| policy_node(n, &login)).collect();
        crate::policy::validate_namespace(policy, &nodes)
            .map(|_| ())
            .map_err(|e| PolicyRefusal::TestFailed { namespace: ns.name.clone(), message: e.to_string() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syntax_errors_name_line_and_column() {
        let err = parse_policy("{\n  // fine\n  \"acls\": [,]\n}").unwrap_err().to_string();
        assert!(err.starts_with("invalid HuJSON: line 3, column 12:"), "{err}");
        assert!(parse_policy("{\"acls\": []}").is_ok());
        let err = parse_policy("{\"bogus\": 1}").unwrap_err().to_string();
        assert!(err.starts_with("invalid policy: line 1"), "{err}");
    }
}
