//! What a client reports about itself on every map request — disco key, endpoints, Hostinfo
//! and with it the home DERP region — stored when it differs from what is stored.

use std::net::SocketAddr;

use super::store::nodes::NodeChange;
use super::store::StoreResult;
use super::Writer;
use crate::domain::hostinfo::Hostinfo;
use crate::domain::Node;
use crate::keys::DiscoPublic;

/// A map request's report, in domain terms; `None` is "not reported this time".
#[derive(Debug, Clone, Default)]
pub struct ClientReport {
    pub disco_key: Option<DiscoPublic>,
    pub endpoints: Option<Vec<SocketAddr>>,
    pub hostinfo: Option<Hostinfo>,
}

impl Writer {
    /// Stores what changed in `report`; an unchanged report (most keep-alive re-polls) writes
    /// nothing and records no event.
    pub async fn report_client_state(&self, node: Node, report: ClientReport) -> StoreResult<Node> {
        match changes(&node, report) {
            Some(change) => self.update_node(&node, change, None).await,
            None => Ok(node),
        }
    }
}

fn changes(node: &Node, report: ClientReport) -> Option<NodeChange> {
    let mut change = NodeChange::default();
    let mut dirty = false;
    if let Some(disco) = report.disco_key.filter(|k| !k.is_zero() && *k != node.disco_key) {
        change.disco_key = Some(disco);
        dirty = true;
    }
    if let Some(endpoints) = report.endpoints.filter(|e| *e != node.endpoints) {
        change.endpoints = Some(endpoints);
        dirty = true;
    }
    if let Some(mut hostinfo) = report.hostinfo {
        hostinfo.keep_net_info_from(&node.hostinfo);
        let home_derp = hostinfo.preferred_derp().filter(|d| *d > 0).and_then(|d| i32::try_from(d).ok());
        if let Some(derp) = home_derp.filter(|d| *d != node.home_derp) {
            change.home_derp = Some(derp);
            dirty = true;
        }
        if hostinfo != node.hostinfo {
            change.hostname = hostinfo.hostname().map(str::to_string);
            change.hostinfo = Some(hostinfo);
            dirty = true;
        }
    }
    dirty.then_some(change)
}
