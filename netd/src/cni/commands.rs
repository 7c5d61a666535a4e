//! The CNI commands, each a few requests to the daemon's API. The daemon
//! does the work (addresses, the veth, the eBPF programs, DNS, published
//! ports); the plugin maps CNI's attachments onto netd containers and back.

use std::collections::HashSet;

use super::attachment::{Attachment, LABEL_NETWORK};
use super::error::{CniError, Code, Result};
use super::invocation::Invocation;
use super::request::create_request;
use super::result::{self, chained, compare, expected, of_container, parse_prev};
use super::types::{CniResult, NetConf};
use crate::api::wire::{ContainerCreateResponse, ContainerJson, NetworkResource};
use crate::cli::client::{Client, ClientError, encode_component};
use crate::netlink::{self, NetlinkError, Netns};

/// ADD: creates the netd container of the attachment in the runtime's
/// namespace and answers with what it got.
pub async fn add(client: &Client, conf: &NetConf, inv: &Invocation) -> Result<CniResult> {
    let (request, prefix) = create_request(conf, inv)?;
    let name = inv.attachment().container_name();
    let created: ContainerCreateResponse = client
        .post(
            &format!("/containers/create?name={}", encode_component(&name)),
            &request,
        )
        .await
        .map_err(|e| CniError::daemon("create the attachment", &e))?;
    let answer = async {
        let c = inspect(client, &created.id)
            .await
            .map_err(|e| CniError::daemon("read the attachment back", &e))?;
        let ep = result::endpoint(&c)?;
        if let Some(p) = prefix.filter(|p| *p != ep.ip_prefix_len) {
            return Err(CniError::new(
                Code::InvalidConfig,
                "invalid static address",
                format!(
                    "prefix length /{p}, but network {} is a /{}",
                    conf.network, ep.ip_prefix_len
                ),
            ));
        }
        let ours = of_container(&c, inv.netns())?;
        Ok(match &conf.prev_result {
            Some(prev) => chained(parse_prev(prev)?, ours),
            None => ours,
        })
    }
    .await;
    if answer.is_err() {
        // The runtime calls DEL after a failed ADD, but need not.
        let _ = remove(client, &created.id).await;
    }
    answer
}

/// DEL: removes the attachment's container, if there is one that is this
/// attachment's. Best effort, as the spec asks: done when it is gone
/// already, when its namespace is gone (the daemon removes what is left),
/// and when the daemon cannot be reached (its record then stays until a
/// later DEL, a GC or `netd container rm` removes it).
pub async fn del(client: &Client, inv: &Invocation) -> Result<()> {
    let name = inv.attachment().container_name();
    let c = match inspect(client, &name).await {
        Ok(c) => c,
        Err(e) if e.status() == Some(404) => return Ok(()),
        Err(e @ (ClientError::Connect { .. } | ClientError::Permission { .. })) => {
            eprintln!("netd-cni: DEL of {name} skipped: {e}");
            return Ok(());
        }
        Err(e) => return Err(CniError::daemon("look up the attachment", &e)),
    };
    if Attachment::of(&c.config.labels).as_ref() != Some(inv.attachment()) {
        // Another container happens to answer to that name: not ours.
        return Ok(());
    }
    remove(client, &c.id)
        .await
        .map_err(|e| CniError::daemon("remove the attachment", &e))
}

/// CHECK: the attachment is there, in the namespace, with the interface,
/// MAC and addresses `prevResult` lists, both in the daemon's record and
/// in the kernel, and the daemon answers.
pub async fn check(client: &Client, conf: &NetConf, inv: &Invocation) -> Result<()> {
    let prev = conf.prev_result.as_ref().ok_or_else(|| {
        CniError::new(
            Code::InvalidConfig,
            "CHECK needs prevResult",
            "the runtime must pass the result of the ADD",
        )
    })?;
    let netns = inv.netns();
    let ifname = &inv.attachment().ifname;
    let want = expected(&parse_prev(prev)?, netns, ifname)?;
    let name = inv.attachment().container_name();
    let unknown = || {
        CniError::new(
            Code::UnknownContainer,
            "no such attachment",
            format!("netd has no container {name} for this attachment"),
        )
    };
    let c = match inspect(client, &name).await {
        Ok(c) => c,
        Err(e) if e.status() == Some(404) => return Err(unknown()),
        Err(e) => return Err(CniError::daemon("look up the attachment", &e)),
    };
    if Attachment::of(&c.config.labels).as_ref() != Some(inv.attachment()) {
        return Err(unknown());
    }
    let mismatch =
        |details: String| CniError::new(Code::Mismatch, "the attachment changed", details);
    if c.sandbox_key != netns {
        return Err(mismatch(format!(
            "netd plugged it into {}, not {netns}",
            c.sandbox_key
        )));
    }
    let ep = result::endpoint(&c)?;
    if ep.ifname != *ifname {
        return Err(mismatch(format!("netd named its interface {}", ep.ifname)));
    }
    let link = match netlink::link_state_in_netns(&Netns::Path(netns.into()), ifname).await {
        Ok(link) => link,
        Err(NetlinkError::NetnsNotFound(_)) => {
            return Err(mismatch(format!("the namespace {netns} is gone")));
        }
        Err(e) => {
            return Err(CniError::new(
                Code::Io,
                "cannot read the interface",
                e.to_string(),
            ));
        }
    };
    compare(&want, ep, link.as_ref())
}

/// STATUS: ready when the daemon answers and has the network.
pub async fn status(client: &Client, conf: &NetConf) -> Result<()> {
    let path = format!("/networks/{}", encode_component(&conf.network));
    match client.get::<NetworkResource>(&path).await {
        Ok(_) => Ok(()),
        Err(e) => Err(CniError::new(
            Code::NotAvailable,
            "netd cannot serve ADD",
            e.to_string(),
        )),
    }
}

/// GC: removes every attachment of this network configuration that the
/// runtime does not list as valid; goes on past failures and reports them
/// all.
pub async fn gc(client: &Client, conf: &NetConf) -> Result<()> {
    let all: Vec<ContainerJson> = client
        .get("/containers/json")
        .await
        .map_err(|e| CniError::daemon("list the attachments", &e))?;
    let valid: HashSet<Attachment> = conf
        .valid_attachments
        .iter()
        .map(|v| Attachment::new(v.container_id.clone(), v.ifname.clone()))
        .collect();
    let mut failures = Vec::new();
    for c in all
        .iter()
        .filter(|c| c.config.labels.get(LABEL_NETWORK) == Some(&conf.name))
        .filter(|c| Attachment::of(&c.config.labels).is_some_and(|a| !valid.contains(&a)))
    {
        if let Err(e) = remove(client, &c.id).await {
            failures.push(format!("{}: {e}", c.name));
        }
    }
    if failures.is_empty() {
        return Ok(());
    }
    Err(CniError::new(
        Code::TryAgainLater,
        "netd: some stale attachments could not be removed",
        failures.join("; "),
    ))
}

async fn inspect(client: &Client, key: &str) -> Result<ContainerJson, ClientError> {
    client
        .get(&format!("/containers/{}/json", encode_component(key)))
        .await
}

/// Removes a container by id; one that is gone, or whose removal is under
/// way already, counts as removed.
async fn remove(client: &Client, id: &str) -> Result<(), ClientError> {
    match client
        .delete(&format!("/containers/{}?force=1", encode_component(id)))
        .await
    {
        Err(e) if matches!(e.status(), Some(404 | 409)) => Ok(()),
        other => other,
    }
}
