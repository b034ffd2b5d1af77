//! Who can call whom, drawn from the configuration in force: the callers (service
//! accounts, users, groups, domains, allUsers, allAuthenticatedUsers, federated
//! principals) in one column, the services in the other; an invoker edge for each member
//! a binding lets invoke a service (on the service, or on the project and so every
//! service), a Token Creator edge for each member that may mint an account's ID tokens,
//! each service's run-as account, and each Google-managed caller (a push subscription or
//! Eventarc trigger, a Cloud Scheduler job, a Cloud Tasks queue's tasks; `callers` reads
//! them) with a push edge to the service whose URL it calls (the account it calls as in
//! its label; whether that account may invoke is the account's own invoker edge). A pure
//! function of the `Config` and the managed callers, laid out here so that the template
//! only draws.

use std::collections::BTreeMap;

use crate::config::{Config, Ingress};
use crate::iam::{self, Member, Policy};

/// How far apart the rows are, and the columns' places, in SVG units.
const ROW: i32 = 52;
const TOP: i32 = 40;
const CALLER_X: i32 = 70;
const SERVICE_X: i32 = 600;
const BOX_WIDTH: i32 = 300;
const BOX_HEIGHT: i32 = 34;
/// Labels longer than this are cut on the page (the whole is in the node's tooltip).
const LABEL_CHARS: usize = 42;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Kind {
    Account,
    User,
    Group,
    Domain,
    Public,
    Federated,
    /// A push subscription (the file's or the API's): a Google-managed caller.
    Subscription,
    /// A Cloud Tasks queue's tasks, as one account.
    Queue,
    /// A Cloud Scheduler job.
    Job,
    Service,
}

impl Kind {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Kind::Account => "account",
            Kind::User => "user",
            Kind::Group => "group",
            Kind::Domain => "domain",
            Kind::Public => "public",
            Kind::Federated => "federated",
            Kind::Subscription => "subscription",
            Kind::Queue => "queue",
            Kind::Job => "job",
            Kind::Service => "service",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Node {
    /// The IAM member (`serviceAccount:…`, `user:…`, `allUsers`) or `service:NAME`.
    pub(crate) id: String,
    pub(crate) kind: Kind,
    pub(crate) label: String,
    /// What the node's box says under its label: ingress, `invoker_iam_disabled`, public,
    /// a group's count of members.
    pub(crate) marks: Vec<String>,
    /// A group's members, as `groups:` lists them (its tooltip and the list give them).
    pub(crate) members: Vec<String>,
    pub(crate) x: i32,
    pub(crate) y: i32,
}

impl Node {
    /// The label as drawn: cut to fit its box.
    pub(crate) fn short_label(&self) -> String {
        if self.label.chars().count() <= LABEL_CHARS {
            return self.label.clone();
        }
        let cut: String = self.label.chars().take(LABEL_CHARS - 1).collect();
        format!("{cut}…")
    }

    /// What the node's tooltip says: its id, and its whole label when the id does not
    /// say it (a managed caller's account).
    pub(crate) fn tooltip(&self) -> String {
        let named = if self.id.ends_with(&self.label) {
            self.id.clone()
        } else {
            format!("{}: {}", self.id, self.label)
        };
        if self.kind == Kind::Group {
            format!("{named} (members: {})", self.members_text())
        } else {
            named
        }
    }

    /// A group's members, joined, or `none`.
    pub(crate) fn members_text(&self) -> String {
        if self.members.is_empty() {
            "none".to_owned()
        } else {
            self.members.join(", ")
        }
    }

    pub(crate) fn width(&self) -> i32 {
        BOX_WIDTH
    }

    pub(crate) fn height(&self) -> i32 {
        BOX_HEIGHT
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum EdgeKind {
    Invoker,
    TokenCreator,
    RunsAs,
    /// A Google-managed caller's calls to a service (a push, a task, a job's run).
    Push,
}

impl EdgeKind {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            EdgeKind::Invoker => "invoker",
            EdgeKind::TokenCreator => "token-creator",
            EdgeKind::RunsAs => "runs-as",
            EdgeKind::Push => "push",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Edge {
    pub(crate) kind: EdgeKind,
    pub(crate) from: String,
    pub(crate) to: String,
    /// Where the binding is: `service`, `project` or `account` (`runs-as` edges: `service`).
    pub(crate) on: &'static str,
    /// The SVG path between the two nodes' boxes.
    pub(crate) path: String,
}

#[derive(Debug, Default)]
pub(crate) struct Graph {
    pub(crate) nodes: Vec<Node>,
    pub(crate) edges: Vec<Edge>,
    pub(crate) height: i32,
}

fn kind_of(member: &Member) -> Kind {
    match member {
        Member::ServiceAccount(_) => Kind::Account,
        Member::User(_) => Kind::User,
        Member::Group(_) => Kind::Group,
        Member::Domain(_) => Kind::Domain,
        Member::AllUsers | Member::AllAuthenticatedUsers => Kind::Public,
        Member::Principal(_) | Member::PrincipalSet(_) => Kind::Federated,
    }
}

/// The members `policy` lets do `permission`.
fn holders<'p>(policy: &'p Policy, permission: &'p str) -> impl Iterator<Item = &'p Member> {
    policy
        .bindings
        .iter()
        .filter(move |b| b.role.grants(permission))
        .flat_map(|b| b.members.iter())
}

/// A Google-managed caller, as the graph draws it: a push subscription (an Eventarc
/// trigger's too), a Cloud Scheduler job, or a Cloud Tasks queue's tasks as one account.
#[derive(Debug, Clone)]
pub(crate) struct Managed {
    /// `subscription:ID`, `job:NAME`, `queue:ID:ACCOUNT`.
    pub(crate) id: String,
    pub(crate) kind: Kind,
    pub(crate) label: String,
    /// The URL it calls.
    pub(crate) url: String,
    /// What its edge is bound on: `subscription`, `job`, `queue`.
    pub(crate) on: &'static str,
}

/// The graph of `config`, with the Google-managed callers (`managed`, as frontdoor holds
/// them: the file's and the APIs') where they call a service.
pub(crate) fn of(config: &Config, managed: &[Managed]) -> Graph {
    // Callers by member id, each with its kind; sorted by kind, then name.
    let mut callers: BTreeMap<String, Kind> = BTreeMap::new();
    let mut edges: Vec<(EdgeKind, String, String, &'static str)> = Vec::new();
    let account = |email: &str| format!("serviceAccount:{email}");
    for sa in &config.service_accounts {
        callers.insert(account(&sa.email), Kind::Account);
    }
    for service in &config.services {
        callers.insert(account(&service.service_account), Kind::Account);
        let to = format!("service:{}", service.name);
        edges.push((
            EdgeKind::RunsAs,
            to.clone(),
            account(&service.service_account),
            "service",
        ));
        for (policy, on) in [(&service.policy, "service"), (&config.policy, "project")] {
            for member in holders(policy, iam::INVOKE) {
                callers.insert(member.to_string(), kind_of(member));
                edges.push((EdgeKind::Invoker, member.to_string(), to.clone(), on));
            }
        }
    }
    for sa in &config.service_accounts {
        for (policy, on) in [(&sa.policy, "account"), (&config.policy, "project")] {
            for member in holders(policy, iam::GET_OPENID_TOKEN) {
                callers.insert(member.to_string(), kind_of(member));
                edges.push((
                    EdgeKind::TokenCreator,
                    member.to_string(),
                    account(&sa.email),
                    on,
                ));
            }
        }
    }
    // Google-managed callers, to the service whose URL (either form, a tag's, a custom
    // domain) they call.
    let mut labels: BTreeMap<String, String> = BTreeMap::new();
    for caller in managed {
        let host = url::Url::parse(&caller.url)
            .ok()
            .and_then(|u| u.host_str().map(str::to_ascii_lowercase));
        let Some(service) = config.services.iter().find(|s| {
            s.hosts()
                .iter()
                .any(|h| Some(h.to_ascii_lowercase()) == host)
        }) else {
            continue;
        };
        labels.insert(caller.id.clone(), caller.label.clone());
        callers.insert(caller.id.clone(), caller.kind);
        edges.push((
            EdgeKind::Push,
            caller.id.clone(),
            format!("service:{}", service.name),
            caller.on,
        ));
    }
    edges.sort();
    edges.dedup();

    let mut ordered: Vec<(Kind, String)> = callers.into_iter().map(|(id, k)| (k, id)).collect();
    ordered.sort();
    let mut nodes: Vec<Node> = ordered
        .into_iter()
        .enumerate()
        .map(|(i, (kind, id))| {
            let members: Vec<String> = id
                .strip_prefix("group:")
                .and_then(|g| config.groups.get(g))
                .map(|m| m.iter().map(ToString::to_string).collect())
                .unwrap_or_default();
            let marks = if kind == Kind::Group {
                vec![match members.len() {
                    1 => "1 member".to_owned(),
                    n => format!("{n} members"),
                }]
            } else {
                Vec::new()
            };
            Node {
                label: labels.get(&id).cloned().unwrap_or_else(|| {
                    id.strip_prefix("serviceAccount:").unwrap_or(&id).to_owned()
                }),
                id,
                kind,
                marks,
                members,
                x: CALLER_X,
                y: TOP + ROW * i as i32,
            }
        })
        .collect();
    let callers_count = nodes.len();
    for (i, service) in config.services.iter().enumerate() {
        let mut marks = Vec::new();
        if service.ingress != Ingress::All {
            marks.push(format!("ingress: {}", service.ingress.as_str()));
        }
        if service.invoker_iam_disabled {
            marks.push("invoker_iam_disabled".to_owned());
        }
        nodes.push(Node {
            members: Vec::new(),
            id: format!("service:{}", service.name),
            kind: Kind::Service,
            label: service.name.clone(),
            marks,
            x: SERVICE_X,
            y: TOP + ROW * i as i32,
        });
    }
    let rows = callers_count.max(config.services.len()) as i32;
    let place = |id: &str| nodes.iter().find(|n| n.id == id).map(|n| (n.x, n.y));
    let edges = edges
        .into_iter()
        .filter_map(|(kind, from, to, on)| {
            let (a, b) = (place(&from)?, place(&to)?);
            Some(Edge {
                path: path(kind, a, b),
                kind,
                from,
                to,
                on,
            })
        })
        .collect();
    Graph {
        nodes,
        edges,
        height: TOP + ROW * rows.max(1),
    }
}

/// From the caller's right side to the service's left (invoker); from the service's left
/// side back to its account's right, bowed (runs as); between two callers' left sides,
/// bowed outward (Token Creator).
fn path(kind: EdgeKind, (ax, ay): (i32, i32), (bx, by): (i32, i32)) -> String {
    let mid = BOX_HEIGHT / 2;
    match kind {
        EdgeKind::Invoker | EdgeKind::Push => {
            let (x1, y1, x2, y2) = (ax + BOX_WIDTH, ay + mid, bx, by + mid);
            let c = (x1 + x2) / 2;
            format!("M{x1},{y1} C{c},{y1} {c},{y2} {x2},{y2}")
        }
        EdgeKind::RunsAs => {
            let (x1, y1, x2, y2) = (ax, ay + mid + 8, bx + BOX_WIDTH, by + mid + 8);
            let c = (x1 + x2) / 2;
            format!("M{x1},{y1} C{c},{} {c},{} {x2},{y2}", y1 + 24, y2 + 24)
        }
        EdgeKind::TokenCreator => {
            let (x1, y1, x2, y2) = (ax, ay + mid, bx, by + mid);
            let bow = ax - 30 - (y2 - y1).abs() / 10;
            format!("M{x1},{y1} C{bow},{y1} {bow},{y2} {x2},{y2}")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(yaml: &str) -> Config {
        crate::config::parse_with(
            yaml,
            std::path::Path::new("services.yaml"),
            &crate::config::NamedFiles::NONE,
        )
        .unwrap()
    }

    const YAML: &str = r#"project: {id: demo-project, number: "123456789012", region: us-central1}
service_accounts:
  - email: login@demo-project.iam.gserviceaccount.com
  - email: search@demo-project.iam.gserviceaccount.com
    iam_policy: {bindings: [{role: roles/iam.serviceAccountTokenCreator, members: [serviceAccount:login@demo-project.iam.gserviceaccount.com]}]}
iam_policy: {bindings: [{role: roles/run.invoker, members: [group:ops@example.com]}]}
services:
  - name: search
    upstream: builtin:echo
    service_account: search@demo-project.iam.gserviceaccount.com
    ingress: internal
    iam_policy: {bindings: [{role: roles/run.invoker, members: [serviceAccount:login@demo-project.iam.gserviceaccount.com, allAuthenticatedUsers]}]}
  - name: login
    upstream: builtin:echo
    service_account: login@demo-project.iam.gserviceaccount.com
    invoker_iam_disabled: true
"#;

    fn edges(g: &Graph) -> Vec<(&str, &str, &str, &str)> {
        g.edges
            .iter()
            .map(|e| (e.kind.as_str(), e.from.as_str(), e.to.as_str(), e.on))
            .collect()
    }

    #[test]
    fn every_binding_is_an_edge_and_every_service_is_marked() {
        let c = config(YAML);
        let g = of(
            &c,
            &super::super::callers::of_subscriptions(&c, &c.pubsub.subscriptions),
        );
        let login = "serviceAccount:login@demo-project.iam.gserviceaccount.com";
        let search = "serviceAccount:search@demo-project.iam.gserviceaccount.com";
        let got = edges(&g);
        for want in [
            ("invoker", login, "service:search", "service"),
            (
                "invoker",
                "allAuthenticatedUsers",
                "service:search",
                "service",
            ),
            (
                "invoker",
                "group:ops@example.com",
                "service:search",
                "project",
            ),
            (
                "invoker",
                "group:ops@example.com",
                "service:login",
                "project",
            ),
            ("token-creator", login, search, "account"),
            ("runs-as", "service:search", search, "service"),
            ("runs-as", "service:login", login, "service"),
        ] {
            assert!(got.contains(&want), "no edge {want:?} in {got:?}");
        }
        assert_eq!(got.len(), 7, "{got:?}");
        let node = |id: &str| g.nodes.iter().find(|n| n.id == id).unwrap();
        assert_eq!(node("service:search").marks, ["ingress: internal"]);
        assert_eq!(node("service:login").marks, ["invoker_iam_disabled"]);
        assert_eq!(node("allAuthenticatedUsers").kind, Kind::Public);
        assert_eq!(
            node(login).label,
            "login@demo-project.iam.gserviceaccount.com"
        );
        // Accounts come first in the callers' column, and no two boxes share a row.
        assert_eq!(g.nodes[0].kind, Kind::Account);
        let mut places: Vec<(i32, i32)> = g.nodes.iter().map(|n| (n.x, n.y)).collect();
        places.sort_unstable();
        places.dedup();
        assert_eq!(places.len(), g.nodes.len());
    }

    #[test]
    fn a_declared_push_subscription_is_a_caller_of_the_service_it_pushes_to() {
        let yaml = format!(
            "{YAML}pubsub:\n  topics:\n    - name: orders\n      subscriptions:\n        - name: to-search\n          push_endpoint: https://search-123456789012.us-central1.run.app/push\n          push_service_account: login@demo-project.iam.gserviceaccount.com\n          push_audience: https://search-123456789012.us-central1.run.app\n        - name: orders-pull\n"
        );
        let c = config(&yaml);
        let g = of(
            &c,
            &super::super::callers::of_subscriptions(&c, &c.pubsub.subscriptions),
        );
        assert!(
            edges(&g).contains(&(
                "push",
                "subscription:to-search",
                "service:search",
                "subscription"
            )),
            "{:?}",
            edges(&g)
        );
        let node = g
            .nodes
            .iter()
            .find(|n| n.id == "subscription:to-search")
            .unwrap();
        assert_eq!(
            node.label,
            "Pub/Sub push: to-search, as login@demo-project.iam.gserviceaccount.com"
        );
        assert!(
            !g.nodes.iter().any(|n| n.id.contains("orders-pull")),
            "a pull subscription calls nobody"
        );
    }

    /// A job and a queue's tasks are callers too, each labelled with its account; a URL
    /// that names no service draws nothing.
    #[test]
    fn jobs_and_queues_are_callers_of_the_services_they_call() {
        use super::super::callers::of_tasks;
        let c = config(YAML);
        let search = "https://search-123456789012.us-central1.run.app/task";
        let managed = [
            of_tasks(
                "projects/demo-project/locations/us-central1/queues/mail",
                search.to_owned(),
                Some("login@demo-project.iam.gserviceaccount.com"),
            ),
            of_tasks(
                "projects/demo-project/locations/us-central1/queues/mail",
                "https://example.com/elsewhere".to_owned(),
                None,
            ),
            Managed {
                id: "job:projects/demo-project/locations/us-central1/jobs/nightly".into(),
                kind: Kind::Job,
                label: "Cloud Scheduler job: nightly, without a token".into(),
                url: "https://login-123456789012.us-central1.run.app/".into(),
                on: "job",
            },
        ];
        let g = of(&c, &managed);
        let got = edges(&g);
        let queue = "queue:projects/demo-project/locations/us-central1/queues/mail:login@demo-project.iam.gserviceaccount.com";
        assert!(
            got.contains(&("push", queue, "service:search", "queue")),
            "{got:?}"
        );
        assert!(got.contains(&(
            "push",
            "job:projects/demo-project/locations/us-central1/jobs/nightly",
            "service:login",
            "job"
        )));
        let node = g.nodes.iter().find(|n| n.id == queue).unwrap();
        assert_eq!(
            (node.kind, node.label.as_str()),
            (
                Kind::Queue,
                "Cloud Tasks queue: mail, as login@demo-project.iam.gserviceaccount.com"
            )
        );
        assert!(
            !g.nodes.iter().any(|n| n.id.ends_with(":-")),
            "no service, no node"
        );
    }

    #[test]
    fn a_group_shows_its_members() {
        let yaml = YAML.replace(
            "iam_policy: {bindings: [{role: roles/run.invoker, members: [group:ops@example.com]}]}",
            "groups: [{email: ops@example.com, members: [user:eli@example.com, user:fay@example.com]}]\niam_policy: {bindings: [{role: roles/run.invoker, members: [group:ops@example.com]}]}",
        );
        let g = of(&config(&yaml), &[]);
        let ops = g
            .nodes
            .iter()
            .find(|n| n.id == "group:ops@example.com")
            .unwrap();
        assert_eq!(ops.marks, ["2 members"]);
        assert_eq!(
            ops.tooltip(),
            "group:ops@example.com (members: user:eli@example.com, user:fay@example.com)"
        );
    }

    #[test]
    fn a_long_label_is_cut_to_its_box() {
        let node = Node {
            id: "x".into(),
            kind: Kind::Federated,
            label: "p".repeat(500),
            marks: Vec::new(),
            members: Vec::new(),
            x: 0,
            y: 0,
        };
        assert_eq!(node.short_label().chars().count(), LABEL_CHARS);
    }
}
