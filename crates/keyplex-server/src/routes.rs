//! The route table: every endpoint of keyplex, declared once.
//!
//! Each entry names a handler — whose `#[utoipa::path]` beside its code gives the path, the
//! method and the OpenAPI entry (`utoipa_axum::routes!` registers both from it) — with its
//! [`Interface`] (metrics, audit trail), its error format (the interface's own: how a request
//! that runs out of time is answered), its [`Access`] (which layers guard it: the admin
//! token, the licence routes' CORS) and the path parameters that are secrets (hidden from
//! logs and from the 404/405 answers). [`router`] and the `/openapi.json` document are both
//! built from [`endpoints`]; what the request-wide middleware needs of a route is installed
//! from it into the core ([`crate::route_info`]), where `http/` reads it without naming any
//! role. Nothing else names a route.
//!
//! `utoipa-axum` rather than a hand-written endpoint enum (as garage does): the path is already
//! written once in each handler's annotation, which the document needs anyway, so the router
//! takes it from there instead of repeating it in an enum.

use axum::Router;
use utoipa::OpenApi as _;
use utoipa_axum::router::{OpenApiRouter, UtoipaMethodRouter};
use utoipa_axum::routes;

use crate::http::error::problem_json;
use crate::operator::{admin, landing, players, ui};
use crate::packager::{cpix, get_cpix, harmonic, nagra, pallycon, speke, widevine_api};
use crate::player::{clearkey, hls_keys, licence_proxy, ssm};
use crate::route_info::{ErrorFormat, RouteInfo, RouteTable};
use crate::scope::Interface;
use crate::state::AppState;

/// Who may call an endpoint, and so which layers the table puts in front of it. Handlers
/// still check what only they can (a packager's SigV4 signature covers the body).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Anyone: health, metrics (the handler asks for the admin token when configured), the
    /// document, the dashboard's files, the landing page.
    Public,
    /// A packager of the tenant: the handler authenticates (Basic, JWT, SigV4, URL tokens).
    Packager,
    /// A player: an entitlement token or a session id; called from browsers, so behind the
    /// tenant's CORS policy.
    Player,
    /// The admin token or an admin JWT, checked by a layer before any handler runs.
    Admin,
}

/// One endpoint: its handler(s) for one path, and what the table knows about them.
pub struct Endpoint {
    pub interface: Interface,
    pub access: Access,
    /// How an error is answered when no handler answers it (a request past its deadline):
    /// the interface's format, given by its module.
    pub errors: ErrorFormat,
    /// Names of the path parameters that are credentials (URL tokens, session ids): the
    /// request span and the 404/405 answers show `<redacted>` in their place.
    pub secret_params: &'static [&'static str],
    routes: UtoipaMethodRouter<AppState>,
}

fn endpoint(
    interface: Interface,
    access: Access,
    errors: ErrorFormat,
    routes: UtoipaMethodRouter<AppState>,
) -> Endpoint {
    Endpoint {
        interface,
        access,
        errors,
        secret_params: &[],
        routes,
    }
}

impl Endpoint {
    /// Declares path parameters that are secrets.
    fn secret(mut self, params: &'static [&'static str]) -> Self {
        self.secret_params = params;
        self
    }
}

/// Every endpoint. Handlers of one path with several methods share an entry.
pub fn endpoints() -> Vec<Endpoint> {
    use Access::{Admin, Packager, Player, Public};
    use Interface as I;
    // The error formats: problem+json, unless the interface speaks its own.
    let problem: ErrorFormat = problem_json;
    let plain: ErrorFormat = cpix::error_response;
    let nagra_json: ErrorFormat = nagra::error_response;
    let widevine_json: ErrorFormat = widevine_api::error_response;
    vec![
        // Operations
        endpoint(I::Other, Public, problem, routes!(landing::landing)),
        endpoint(I::Other, Public, problem, routes!(crate::healthz)),
        endpoint(I::Other, Public, problem, routes!(crate::metrics)),
        endpoint(
            I::Other,
            Public,
            problem,
            routes!(crate::openapi::get_openapi_json),
        ),
        endpoint(I::Other, Public, problem, routes!(ui::ui_redirect)),
        endpoint(I::Other, Public, problem, routes!(ui::ui_index)),
        endpoint(I::Other, Public, problem, routes!(ui::ui_index_html)),
        endpoint(I::Other, Public, problem, routes!(ui::ui_app_js)),
        endpoint(I::Other, Public, problem, routes!(ui::ui_style_css)),
        endpoint(
            I::Other,
            Public,
            problem,
            routes!(players::players_redirect),
        ),
        // Packagers
        endpoint(I::Cpix, Packager, plain, routes!(cpix::post_cpix)),
        endpoint(I::Cpix, Packager, plain, routes!(cpix::post_cpix_short_url)),
        endpoint(I::Speke, Packager, plain, routes!(speke::post_speke_v1)),
        endpoint(I::Speke, Packager, plain, routes!(speke::post_speke_v2)),
        endpoint(I::Nagra, Packager, nagra_json, routes!(nagra::post_key)),
        endpoint(I::Nagra, Packager, nagra_json, routes!(nagra::post_cmaf)),
        endpoint(I::Harmonic, Packager, plain, routes!(harmonic::post_key)),
        endpoint(I::GetCpix, Packager, plain, routes!(get_cpix::get_cpix)),
        endpoint(
            I::GetCpix,
            Packager,
            plain,
            routes!(get_cpix::get_cpix_token_in_path),
        )
        .secret(&["token"]),
        endpoint(I::Pallycon, Packager, plain, routes!(pallycon::post_v1)).secret(&["enc_token"]),
        endpoint(I::Pallycon, Packager, plain, routes!(pallycon::post_v2)).secret(&["enc_token"]),
        endpoint(I::Pallycon, Packager, plain, routes!(pallycon::post_speke)),
        endpoint(I::Pallycon, Packager, plain, routes!(pallycon::get_anevia))
            .secret(&["enc_token"]),
        endpoint(
            I::WidevineApi,
            Packager,
            widevine_json,
            routes!(widevine_api::post_get_content_key),
        ),
        // Players
        endpoint(
            I::ClearKey,
            Player,
            problem,
            routes!(clearkey::post_licence),
        ),
        endpoint(I::Hls, Player, problem, routes!(hls_keys::get_key)),
        endpoint(
            I::Widevine,
            Player,
            problem,
            routes!(licence_proxy::post_widevine),
        ),
        endpoint(
            I::PlayReady,
            Player,
            problem,
            routes!(licence_proxy::post_playready),
        ),
        endpoint(
            I::FairPlay,
            Player,
            problem,
            routes!(licence_proxy::post_fairplay),
        ),
        endpoint(I::Prm, Player, problem, routes!(licence_proxy::post_prm)),
        endpoint(
            I::DefinedDrm,
            Player,
            problem,
            routes!(licence_proxy::post_defined),
        ),
        // A session id is the bearer secret of its session's calls.
        endpoint(I::Ssm, Player, problem, routes!(ssm::post_setup)),
        endpoint(I::SsmLicence, Player, problem, routes!(ssm::post_licence)).secret(&["id"]),
        endpoint(I::Ssm, Player, problem, routes!(ssm::post_heartbeat)).secret(&["id"]),
        endpoint(I::Ssm, Player, problem, routes!(ssm::delete_session)).secret(&["id"]),
        // Admin API
        endpoint(
            I::Admin,
            Admin,
            problem,
            routes!(admin::tenants::list_tenants, admin::tenants::create_tenant),
        ),
        endpoint(
            I::Admin,
            Admin,
            problem,
            routes!(admin::tenants::get_tenant, admin::tenants::patch_tenant),
        ),
        endpoint(
            I::Admin,
            Admin,
            problem,
            routes!(
                admin::credentials::list_credentials,
                admin::credentials::add_credential
            ),
        ),
        endpoint(
            I::Admin,
            Admin,
            problem,
            routes!(admin::credentials::revoke_credential),
        ),
        endpoint(
            I::Admin,
            Admin,
            problem,
            routes!(admin::contents::list_contents),
        ),
        endpoint(
            I::Admin,
            Admin,
            problem,
            routes!(admin::contents::content_keys),
        ),
        endpoint(
            I::Admin,
            Admin,
            problem,
            routes!(
                admin::licence_policy::get_policy,
                admin::licence_policy::put_policy,
                admin::licence_policy::delete_policy
            ),
        ),
        endpoint(
            I::Admin,
            Admin,
            problem,
            routes!(admin::drm_systems::list_drm_systems),
        ),
        endpoint(
            I::Admin,
            Admin,
            problem,
            routes!(
                admin::drm_systems::get_drm_system,
                admin::drm_systems::put_drm_system,
                admin::drm_systems::remove_drm_system
            ),
        ),
        endpoint(
            I::Admin,
            Admin,
            problem,
            routes!(admin::backup::export_keys),
        ),
        endpoint(
            I::Admin,
            Admin,
            problem,
            routes!(admin::backup::import_keys),
        ),
        endpoint(
            I::Admin,
            Admin,
            problem,
            routes!(admin::rotation::rotate_master_key),
        ),
        endpoint(I::Admin, Admin, problem, routes!(admin::audit::audit)),
        endpoint(I::Admin, Admin, problem, routes!(admin::stats::stats)),
    ]
}

/// The paths an endpoint serves (one, in practice).
fn paths_of(endpoint: &Endpoint) -> impl Iterator<Item = &String> {
    endpoint.routes.1.paths.keys()
}

/// What the middleware needs of every route of the table, by route template.
fn route_table() -> RouteTable {
    let mut table = RouteTable::default();
    for endpoint in endpoints() {
        let info = RouteInfo {
            interface: endpoint.interface,
            errors: endpoint.errors,
            browser_cors: endpoint.access == Access::Player,
        };
        for path in paths_of(&endpoint) {
            table.add(path, info, endpoint.secret_params);
        }
    }
    table
}

/// Installs the table's [`RouteInfo`]s for the middleware (once per process; [`router`]
/// does it before it serves).
pub fn install() {
    crate::route_info::install(route_table);
}

/// Every route of keyplex, each group behind the layers its [`Access`] asks for, before the
/// request-wide layers (`crate::router` adds them).
pub fn router(state: &AppState) -> Router<AppState> {
    install();
    let mut public = OpenApiRouter::new();
    let mut players = OpenApiRouter::new();
    let mut admins = OpenApiRouter::new();
    for endpoint in endpoints() {
        match endpoint.access {
            Access::Public | Access::Packager => public = public.routes(endpoint.routes),
            Access::Player => players = players.routes(endpoint.routes),
            Access::Admin => admins = admins.routes(endpoint.routes),
        }
    }
    // CORS (and every OPTIONS) of these routes is answered by `track` through
    // `http::cors::around`, from the table's `browser_cors`: not a layer of its own.
    let players = Router::from(players).method_not_allowed_fallback(landing::method_not_allowed);
    let admins = Router::from(admins)
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            admin::require_admin,
        ))
        .layer(axum::middleware::map_response(admin::bearer_challenge));
    Router::from(public)
        .merge(players)
        .merge(admins)
        // A folder of static files has no handler to annotate: its prefix is written here, its
        // entries in the document come from `players::PlayersDoc`.
        .merge(players::router("/players/", state.players_dir().to_owned()))
        .fallback(landing::not_found)
        .method_not_allowed_fallback(landing::method_not_allowed)
}

/// The OpenAPI document of the table (no state is needed to describe it).
pub fn document() -> utoipa::openapi::OpenApi {
    let mut public = OpenApiRouter::<AppState>::with_openapi(crate::openapi::ApiDoc::openapi());
    for endpoint in endpoints() {
        public = public.routes(endpoint.routes);
    }
    let mut document = public.into_openapi();
    document.merge(players::PlayersDoc::openapi());
    crate::openapi::finish(&mut document);
    document
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    use axum::http::{StatusCode, header};
    use axum::response::Response;
    use keyplex_store::StoreError;

    use super::*;
    use crate::http::error::ApiError;
    use crate::http::telemetry::loggable_uri;
    use crate::route_info;

    /// The interface the middleware finds for a matched route template.
    fn interface_of(template: &str) -> Interface {
        install();
        route_info::of(template).interface
    }

    #[test]
    fn every_path_is_declared_once_and_has_an_interface_unless_it_is_operations() {
        let mut seen = std::collections::HashSet::new();
        for endpoint in endpoints() {
            for path in paths_of(&endpoint) {
                assert!(seen.insert(path.clone()), "{path} is declared twice");
                let operations = path == "/"
                    || ["/healthz", "/metrics", "/openapi.json", "/ui", "/players"]
                        .iter()
                        .any(|p| path.starts_with(p));
                assert_eq!(
                    endpoint.interface == Interface::Other,
                    operations,
                    "{path}: interface {:?}",
                    endpoint.interface
                );
                assert_eq!(
                    endpoint.access == Access::Admin,
                    path.starts_with("/admin/"),
                    "{path}"
                );
            }
        }
        assert_eq!(interface_of("/{tenant}/cpix"), Interface::Cpix);
        assert_eq!(
            interface_of("/{tenant}/licences/{name}"),
            Interface::DefinedDrm
        );
        assert_eq!(interface_of("/players/"), Interface::Other);
    }

    /// The format each interface answered a request past its deadline in before the table
    /// said it (`deadline::render` matched on the interface): every endpoint still does.
    #[test]
    fn every_endpoint_answers_errors_outside_its_handler_in_its_interface_format() {
        install();
        for endpoint in endpoints() {
            for path in paths_of(&endpoint) {
                let info = route_info::of(path);
                assert_eq!(info.interface, endpoint.interface, "{path}");
                let response = (info.errors)(ApiError::Deadline { seconds: 1 });
                let (status, content_type) = match endpoint.interface {
                    Interface::Cpix
                    | Interface::Speke
                    | Interface::GetCpix
                    | Interface::Harmonic
                    | Interface::Pallycon => {
                        (StatusCode::SERVICE_UNAVAILABLE, "text/plain; charset=utf-8")
                    }
                    Interface::Nagra => (StatusCode::SERVICE_UNAVAILABLE, "application/json"),
                    Interface::WidevineApi => (StatusCode::OK, "application/json"),
                    _ => (StatusCode::SERVICE_UNAVAILABLE, "application/problem+json"),
                };
                assert_eq!(response.status(), status, "{path}");
                assert_eq!(
                    response.headers()[header::CONTENT_TYPE],
                    content_type,
                    "{path}"
                );
                let body = futures_body(response);
                let code = match endpoint.interface {
                    Interface::Nagra => r#""status":"SERVICE_UNAVAILABLE""#,
                    Interface::WidevineApi => r#""status":"INTERNAL_ERROR""#,
                    _ => "request not answered within 1 s, try again",
                };
                assert!(body.contains(code), "{path}: {body}");
            }
        }
        // A route the table does not declare: problem+json.
        assert_eq!(route_info::of("/players/").interface, Interface::Other);
    }

    #[test]
    fn secret_params_are_parameters_of_their_paths() {
        let mut declared = 0;
        for endpoint in endpoints() {
            for path in paths_of(&endpoint) {
                for name in endpoint.secret_params {
                    declared += 1;
                    assert!(
                        path.split('/').any(|s| s == format!("{{{name}}}")),
                        "{path} has no parameter {name}"
                    );
                }
            }
        }
        assert_eq!(declared, 7);
    }

    #[test]
    fn logged_uris_hide_tokens() {
        install();
        let uri = |s: &str| loggable_uri(&s.parse::<axum::http::Uri>().unwrap());
        assert_eq!(
            uri("/vod/cpix/dash/movie-5/get-token-of-vod-0123456789"),
            "/vod/cpix/dash/movie-5/<redacted>"
        );
        assert_eq!(
            uri("/vod/cpix/hls/movie-5?start=3&token=abc&X-Amz-Signature=f00&keyFormat="),
            "/vod/cpix/hls/movie-5?start=3&token=<redacted>&X-Amz-Signature=<redacted>&keyFormat="
        );
        // PallyCon's token in the path and in its SPEKE form's query; ATEME's GET form.
        assert_eq!(
            uri("/acme/v2/cpix/pallycon/getKey/eyJzaXRlX2lkIjoiREVNTyJ9"),
            "/acme/v2/cpix/pallycon/getKey/<redacted>"
        );
        assert_eq!(
            uri("/acme/cpix/getKey?enc-token=eyJzaXRlX2lkIjoiREVNTyJ9"),
            "/acme/cpix/getKey?enc-token=<redacted>"
        );
        assert_eq!(
            uri("/acme/cpix/anevia/dash/eyJzaXRlX2lkIjoiREVNTyJ9/test-cid"),
            "/acme/cpix/anevia/dash/<redacted>/test-cid"
        );
        // Names are compared decoded, as the query parser reads them.
        assert_eq!(
            uri(
                "/vod/cpix/hls/movie-5?%74oken=abc&%54OKEN=def&x%2Damz%2Dsignature=f00&to%6b%65n=g"
            ),
            "/vod/cpix/hls/movie-5?%74oken=<redacted>&%54OKEN=<redacted>&x%2Damz%2Dsignature=<redacted>&to%6b%65n=<redacted>"
        );
        assert_eq!(
            uri("/vod/cpix/hls/movie-5?start=%74oken&a%zz=1&b%7=2"),
            "/vod/cpix/hls/movie-5?start=%74oken&a%zz=1&b%7=2"
        );
        // SSM session ids, in every session call.
        assert_eq!(
            uri("/acme/ssm/v1/sessions/Zm9vYmFyLXNlc3Npb24/heartbeat"),
            "/acme/ssm/v1/sessions/<redacted>/heartbeat"
        );
        assert_eq!(
            uri("/acme/ssm/v1/sessions/Zm9vYmFyLXNlc3Npb24"),
            "/acme/ssm/v1/sessions/<redacted>"
        );
        assert_eq!(
            uri("/acme/ssm/v1/sessions/setup"),
            "/acme/ssm/v1/sessions/setup"
        );
        // Other paths, including five-segment ones of other interfaces, are kept.
        assert_eq!(uri("/acme/cpix"), "/acme/cpix");
        assert_eq!(
            uri("/acme/hls/v1/keys/0f0e0d0c-0b0a-0908-0706-050403020100"),
            "/acme/hls/v1/keys/0f0e0d0c-0b0a-0908-0706-050403020100"
        );
    }

    /// Which segments `loggable_uri` redacted before the secrets were declared in the table
    /// (the path shapes it matched by hand).
    fn former_secret_segments(segments: &[&str]) -> Vec<usize> {
        match segments {
            ["", _, "cpix", _, _, _] | ["", _, "v1" | "v2", "cpix", "pallycon", "getKey", _] => {
                vec![segments.len() - 1]
            }
            ["", _, "cpix", "anevia", _, _, _] => vec![5],
            ["", _, "ssm", "v1", "sessions", id, ..] if *id != "setup" => vec![5],
            _ => vec![],
        }
    }

    /// Every segment the former shapes hid is still hidden, on every route and on paths
    /// around them (other values, missing and extra segments).
    #[test]
    fn the_table_hides_every_segment_the_former_shapes_hid() {
        install();
        let mut paths = vec![
            "/acme/ssm/v1/sessions/setup".to_owned(),
            "/acme/ssm/v1/sessions/setup/heartbeat".to_owned(),
            "/acme/ssm/v1/sessions/abc/licence/more".to_owned(),
            "/acme/cpix/anevia/dash/tok".to_owned(),
            "/admin/cpix/dash/movie/tok".to_owned(),
            "//cpix///".to_owned(),
        ];
        for endpoint in endpoints() {
            for template in paths_of(&endpoint) {
                for value in ["x", "setup", "anevia", "getKey", "v1", ""] {
                    let path = template
                        .split('/')
                        .map(|s| if s.starts_with('{') { value } else { s })
                        .collect::<Vec<_>>()
                        .join("/");
                    for suffix in ["", "/", "/more", "/a/b"] {
                        paths.push(format!("{path}{suffix}"));
                    }
                    let mut shorter: Vec<&str> = path.split('/').collect();
                    shorter.pop();
                    paths.push(shorter.join("/"));
                }
            }
        }
        let mut redacted = 0;
        for path in &paths {
            let segments: Vec<&str> = path.split('/').collect();
            let now = route_info::secret_segments(&segments);
            for at in former_secret_segments(&segments) {
                redacted += 1;
                assert!(
                    now.contains(&at),
                    "{path}: segment {at} is no longer hidden"
                );
            }
        }
        assert!(redacted > 50, "{redacted}");
    }

    /// The default ClearKey licence URL and HLS key URL written into signaling
    /// (`signaling::TenantUrls`) are routes of the ClearKey and HLS interfaces.
    #[test]
    fn default_licence_urls_are_routes_of_their_interfaces() {
        install();
        let tenant = keyplex_types::TenantId::parse("acme").unwrap();
        let base = "https://keyplex.example";
        let urls = crate::signaling::TenantUrls::new(
            base,
            &tenant,
            &crate::config::TenantConfig::default(),
        )
        .unwrap();
        let kid = "0f0e0d0c-0b0a-0908-0706-050403020100";
        for (url, interface) in [
            (urls.clearkey_la_url.clone(), Interface::ClearKey),
            (urls.hls_key_url.replace("{kid}", kid), Interface::Hls),
        ] {
            let path = url.strip_prefix(base).unwrap();
            let template = route_info::template_of(path).unwrap_or_else(|| panic!("{url}"));
            assert_eq!(interface_of(template), interface, "{url}");
        }
        assert_eq!(route_info::template_of("/acme/no/such/route"), None);
        assert_eq!(
            route_info::template_of("/acme/ssm/v1/sessions/setup"),
            Some("/{tenant}/ssm/v1/sessions/setup")
        );
    }

    /// A log that tests can read back.
    #[derive(Clone, Default)]
    struct Log(Arc<Mutex<Vec<u8>>>);

    impl Write for Log {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Log {
        fn text(&self) -> String {
            String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
        }
    }

    /// Renders `error` through `render` with a log attached; the log and the body.
    fn render(error: ApiError, render: fn(ApiError) -> Response) -> (String, StatusCode, String) {
        let log = Log::default();
        let writer = log.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish();
        let response = tracing::subscriber::with_default(subscriber, || render(error));
        let status = response.status();
        let body = futures_body(response);
        (log.text(), status, body)
    }

    fn futures_body(response: Response) -> String {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let bytes = runtime
            .block_on(axum::body::to_bytes(response.into_body(), 1 << 20))
            .unwrap();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    #[test]
    fn a_busy_store_answers_503_with_retry_after_in_each_format() {
        type Renderer = fn(ApiError) -> Response;
        let renderers: [(Renderer, StatusCode, &str); 4] = [
            (
                problem_json,
                StatusCode::SERVICE_UNAVAILABLE,
                "application/problem+json",
            ),
            (
                cpix::error_response,
                StatusCode::SERVICE_UNAVAILABLE,
                "text/plain; charset=utf-8",
            ),
            (
                nagra::error_response,
                StatusCode::SERVICE_UNAVAILABLE,
                "application/json",
            ),
            // 200 with the status Shaka Packager retries (see widevine_api::WidevineJson).
            (
                widevine_api::error_response,
                StatusCode::OK,
                "application/json",
            ),
        ];
        for (renderer, status, content_type) in renderers {
            let error = ApiError::from(StoreError::Busy {
                retry_after_seconds: 1,
            });
            let response = renderer(error);
            assert_eq!(response.status(), status);
            assert_eq!(response.headers()[header::RETRY_AFTER], "1");
            assert_eq!(response.headers()[header::CONTENT_TYPE], content_type);
            let body = futures_body(response);
            assert!(body.contains("key store busy, retry after 1 s"), "{body}");
        }
        let nagra = futures_body(nagra::error_response(ApiError::StoreBusy {
            retry_after_seconds: 1,
        }));
        assert!(
            nagra.contains(r#""status":"SERVICE_UNAVAILABLE""#),
            "{nagra}"
        );
        let widevine = futures_body(widevine_api::error_response(ApiError::StoreBusy {
            retry_after_seconds: 1,
        }));
        assert!(
            widevine.contains(r#""status":"INTERNAL_ERROR""#),
            "{widevine}"
        );
    }

    #[test]
    fn a_store_outage_logs_its_cause_once_and_tells_the_client_only_the_generic_text() {
        let cause = "cannot start a write transaction: disk I/O error";
        let renderers: [fn(ApiError) -> Response; 4] = [
            problem_json,
            cpix::error_response,
            nagra::error_response,
            widevine_api::error_response,
        ];
        for renderer in renderers {
            let error = ApiError::from(StoreError::Unavailable(cause.to_owned()));
            let (log, status, body) = render(error, renderer);
            assert_eq!(log.matches(cause).count(), 1, "{log}");
            assert!(log.contains("store unavailable"), "{log}");
            assert!(!body.contains(cause), "{body}");
            assert!(body.contains("key store unavailable, try again"), "{body}");
            assert!(
                status == StatusCode::SERVICE_UNAVAILABLE || status == StatusCode::OK,
                "{status}"
            );
        }
    }
}
