//! What the request-wide middleware needs to know of a route, so that `http/` reads it
//! without naming any role: the route table (`routes.rs`) declares it with each endpoint —
//! its [`Interface`], its error format, which path parameters are secrets — and installs it
//! here once, before the router serves ([`install`]). `track` and `deadline` look a request's
//! matched route template up ([`of`]); the request span and the 404/405 answers hide the
//! secret path parameters ([`secret_segments`]).

use std::sync::{LazyLock, OnceLock};

use axum::response::Response;

use crate::http::error::ApiError;
use crate::scope::Interface;

/// How an error is answered on a route: the interface's own format (plain text for the CPIX
/// family, the NAGRA and Widevine API envelopes, problem+json elsewhere).
pub type ErrorFormat = fn(ApiError) -> Response;

/// The middleware's view of one route.
#[derive(Clone, Copy, Debug)]
pub struct RouteInfo {
    pub interface: Interface,
    /// Renders an error that no handler rendered (a request past its deadline).
    pub errors: ErrorFormat,
    /// Called from browsers (players' pages): CORS is answered for it ([`crate::http::cors`]).
    pub browser_cors: bool,
}

impl RouteInfo {
    /// A route the table does not declare (the players' files) or no route at all.
    pub const OTHER: Self = Self {
        interface: Interface::Other,
        errors: crate::http::error::problem_json,
        browser_cors: false,
    };
}

/// One route template, split into path segments (`/{tenant}/cpix` is `""`, a parameter,
/// `"cpix"`).
#[derive(Debug)]
struct Shape {
    template: String,
    /// `None` for a parameter (`{name}`), the text of a literal segment.
    segments: Vec<Option<String>>,
    /// Indices in `segments` of the parameters that are secrets.
    secrets: Vec<usize>,
}

impl Shape {
    fn parse(template: &str, secret_params: &[&str]) -> Self {
        let mut segments = Vec::new();
        let mut secrets = Vec::new();
        for (i, segment) in template.split('/').enumerate() {
            match segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                Some(name) => {
                    if secret_params.contains(&name) {
                        secrets.push(i);
                    }
                    segments.push(None);
                }
                None => segments.push(Some(segment.to_owned())),
            }
        }
        Self {
            template: template.to_owned(),
            segments,
            secrets,
        }
    }

    /// Whether the path's segments `0..=last` are those of this template (a parameter takes
    /// any segment, even an empty one).
    fn matches_up_to(&self, path: &[&str], last: usize) -> bool {
        path.len() > last
            && self.segments.len() > last
            && self
                .segments
                .iter()
                .zip(path)
                .take(last + 1)
                .all(|(segment, p)| segment.as_deref().is_none_or(|s| s == *p))
    }

    /// Whether this template takes precedence over `other` for a path both match up to
    /// `last`: the router prefers a literal segment to a parameter, leftmost first.
    fn wins_over(&self, other: &Self, last: usize) -> bool {
        self.segments
            .iter()
            .zip(&other.segments)
            .take(last + 1)
            .find(|(a, b)| a.is_some() != b.is_some())
            .is_some_and(|(a, _)| a.is_some())
    }
}

/// Every route the table declares: [`RouteInfo`] by template, and the templates' shapes.
#[derive(Debug, Default)]
pub struct RouteTable {
    by_template: hashbrown::HashMap<String, RouteInfo>,
    shapes: Vec<Shape>,
}

impl RouteTable {
    /// Declares `template` (`/{tenant}/cpix/{format}/{content_id}/{token}`) with what the
    /// middleware needs of it and the names of its path parameters that are secrets.
    pub fn add(&mut self, template: &str, info: RouteInfo, secret_params: &[&str]) {
        self.by_template.insert(template.to_owned(), info);
        self.shapes.push(Shape::parse(template, secret_params));
    }

    /// Indices of the path segments (`path.split('/')`) that are secret: a segment is
    /// secret when the path begins like a template up to a secret parameter of it, in that
    /// parameter's place, unless a template with a literal segment there takes precedence
    /// (`/{tenant}/ssm/v1/sessions/setup` over `…/sessions/{id}`). A path below a secret
    /// (`…/sessions/{id}/anything`) hides it too, so that a client's mistyped URL does not
    /// put a token in a log or a 404.
    fn secret_segments(&self, path: &[&str]) -> Vec<usize> {
        let mut out = Vec::new();
        for shape in &self.shapes {
            for &at in &shape.secrets {
                let preferred = || {
                    self.shapes
                        .iter()
                        .any(|other| other.matches_up_to(path, at) && other.wins_over(shape, at))
                };
                if shape.matches_up_to(path, at) && !out.contains(&at) && !preferred() {
                    out.push(at);
                }
            }
        }
        out
    }

    /// The template the router takes for `path` (whatever the method), if any.
    fn template_of(&self, path: &str) -> Option<&str> {
        let path: Vec<&str> = path.split('/').collect();
        let last = path.len().checked_sub(1)?;
        let candidates: Vec<&Shape> = self
            .shapes
            .iter()
            .filter(|shape| shape.segments.len() == path.len() && shape.matches_up_to(&path, last))
            .collect();
        candidates
            .iter()
            .find(|shape| !candidates.iter().any(|other| other.wins_over(shape, last)))
            .map(|shape| shape.template.as_str())
    }
}

static TABLE: OnceLock<RouteTable> = OnceLock::new();

/// Installs the route table (the first call builds it; later calls do nothing: the table is
/// the same for every server of the process).
pub fn install(build: impl FnOnce() -> RouteTable) {
    TABLE.get_or_init(build);
}

/// The table, or an empty one before [`install`] (nothing is then known of any route).
fn table() -> &'static RouteTable {
    static EMPTY: LazyLock<RouteTable> = LazyLock::new(RouteTable::default);
    TABLE.get().unwrap_or(&EMPTY)
}

/// What the table declares for a matched route template (`/{tenant}/cpix`, …);
/// [`RouteInfo::OTHER`] for routes it does not know.
pub fn of(template: &str) -> RouteInfo {
    table()
        .by_template
        .get(template)
        .copied()
        .unwrap_or(RouteInfo::OTHER)
}

/// The indices of `path`'s segments (`path.split('/')`) that are secret path parameters
/// (the rule: `RouteTable::secret_segments`).
pub fn secret_segments(path: &[&str]) -> Vec<usize> {
    table().secret_segments(path)
}

/// The template of the route that serves `path`, if the table has one.
pub fn template_of(path: &str) -> Option<&'static str> {
    table().template_of(path)
}
