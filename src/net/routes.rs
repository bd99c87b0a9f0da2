//! The router: the path is resolved into a [`Route`] (README routes and the Django
//! implementation's aliases alike; the trailing slash is optional), then one `match`
//! on (route, method) picks the handler. A known path with the wrong method is a
//! 405; an unknown path, or a chat id that is not a positive integer, is a 404.

use crate::api;
use crate::app::AppState;
use crate::http::error::ApiError;
use crate::http::response::Body;
use crate::shutdown::Shutdown;
use crate::ws;
use hyper::body::Incoming;
use hyper::{Method, Request, Response};
use std::sync::Arc;

/// Every resource the API serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    Register,
    Login,
    Refresh,
    Logout,
    Users,
    StartChat,
    Chats,
    Messages(i64),
    ChatSocket(i64),
    UserSocket,
    Health,
    Ready,
    Metrics,
    Demo,
    ClientScript,
    Schema,
}

/// Every (method, path template) the router serves; the OpenAPI document must
/// describe each (a test checks), and each must resolve.
pub const ROUTES: &[(&str, &str)] = &[
    ("POST", "/auth/register/"),
    ("POST", "/api/users/register/"),
    ("POST", "/auth/login/"),
    ("POST", "/api/token/"),
    ("POST", "/auth/refresh/"),
    ("POST", "/api/token/refresh/"),
    ("POST", "/auth/logout/"),
    ("POST", "/api/token/blacklist/"),
    ("GET", "/api/users/"),
    ("POST", "/api/chat/start/"),
    ("POST", "/api/chats/start/"),
    ("GET", "/api/chat/chats/"),
    ("GET", "/api/chats/chats/"),
    ("GET", "/api/chat/chats/{chat_id}/messages/"),
    ("POST", "/api/chat/chats/{chat_id}/messages/"),
    ("GET", "/api/chats/chats/{chat_id}/messages/"),
    ("POST", "/api/chats/chats/{chat_id}/messages/"),
    ("GET", "/ws/chats/{chat_id}/"),
    ("GET", "/ws/"),
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/metrics"),
    ("GET", "/"),
    ("GET", "/chat-client.js"),
    ("GET", "/api/schema/"),
];

impl Route {
    /// Resolves a path; `None` for anything the API does not serve.
    pub fn resolve(path: &str) -> Option<Route> {
        let trimmed = path.strip_prefix('/')?;
        let trimmed = trimmed.strip_suffix('/').unwrap_or(trimmed);
        // The longest route has five segments; a longer path matches none.
        let mut segments = [""; 5];
        let mut count = 0;
        for segment in trimmed.split('/') {
            *segments.get_mut(count)? = segment;
            count += 1;
        }
        let route = match &segments[..count] {
            ["auth", "register"] | ["api", "users", "register"] => Route::Register,
            ["auth", "login"] | ["api", "token"] => Route::Login,
            ["auth", "refresh"] | ["api", "token", "refresh"] => Route::Refresh,
            ["auth", "logout"] | ["api", "token", "blacklist"] => Route::Logout,
            ["api", "users"] => Route::Users,
            ["api", "chat" | "chats", "start"] => Route::StartChat,
            ["api", "chat" | "chats", "chats"] => Route::Chats,
            ["api", "chat" | "chats", "chats", id, "messages"] => Route::Messages(parse_id(id)?),
            ["ws", "chats", id] => Route::ChatSocket(parse_id(id)?),
            ["ws"] => Route::UserSocket,
            ["healthz"] => Route::Health,
            ["readyz"] => Route::Ready,
            ["metrics"] => Route::Metrics,
            [""] | ["index.html"] => Route::Demo,
            ["chat-client.js"] => Route::ClientScript,
            ["api", "schema"] => Route::Schema,
            _ => return None,
        };
        Some(route)
    }

    /// A stable name for logs and metrics.
    pub fn name(self) -> &'static str {
        match self {
            Route::Register => "register",
            Route::Login => "login",
            Route::Refresh => "refresh",
            Route::Logout => "logout",
            Route::Users => "users",
            Route::StartChat => "start_chat",
            Route::Chats => "chats",
            Route::Messages(_) => "messages",
            Route::ChatSocket(_) => "websocket",
            Route::UserSocket => "user_socket",
            Route::Health => "healthz",
            Route::Ready => "readyz",
            Route::Metrics => "metrics",
            Route::Demo => "demo",
            Route::ClientScript => "client_script",
            Route::Schema => "schema",
        }
    }

    /// The methods the route answers, for `Allow` and 405s.
    pub fn allowed(self) -> &'static str {
        match self {
            Route::Users
            | Route::Chats
            | Route::ChatSocket(_)
            | Route::UserSocket
            | Route::Health
            | Route::Ready
            | Route::Metrics
            | Route::Demo
            | Route::ClientScript
            | Route::Schema => "GET, OPTIONS",
            Route::Messages(_) => "GET, POST, OPTIONS",
            _ => "POST, OPTIONS",
        }
    }
}

/// A positive id that fits in a database `BIGINT`.
pub fn parse_id(segment: &str) -> Option<i64> {
    if segment.is_empty() || !segment.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    segment.parse::<i64>().ok().filter(|id| *id > 0)
}

/// Runs the handler for a request.
pub async fn dispatch(
    state: &Arc<AppState>,
    route: Option<Route>,
    request: Request<Incoming>,
    shutdown: &Shutdown,
) -> Result<Response<Body>, ApiError> {
    let route = route.ok_or(ApiError::NotFound)?;
    let method = request.method().clone();
    match (route, method) {
        (Route::Register, Method::POST) => api::auth::register(state, request).await,
        (Route::Login, Method::POST) => api::auth::login(state, request).await,
        (Route::Refresh, Method::POST) => api::auth::refresh(state, request).await,
        (Route::Logout, Method::POST) => api::auth::logout(state, request).await,
        (Route::Users, Method::GET) => api::users::search(state, request).await,
        (Route::StartChat, Method::POST) => api::chats::start(state, request).await,
        (Route::Chats, Method::GET) => api::chats::list(state, request).await,
        (Route::Messages(id), Method::GET) => api::messages::history(state, request, id).await,
        (Route::Messages(id), Method::POST) => api::messages::send(state, request, id).await,
        (Route::ChatSocket(id), Method::GET) => ws::handshake(state, request, id, shutdown).await,
        (Route::UserSocket, Method::GET) => ws::user_handshake(state, request, shutdown).await,
        (Route::Health, Method::GET) => Ok(api::health::healthz()),
        (Route::Ready, Method::GET) => Ok(api::health::readyz(state).await),
        (Route::Metrics, Method::GET) => Ok(api::health::metrics(state)),
        (Route::Demo, Method::GET) => Ok(api::demo::page()),
        (Route::ClientScript, Method::GET) => Ok(api::demo::client_script()),
        (Route::Schema, Method::GET) => Ok(api::demo::schema()),
        (route, Method::OPTIONS) => Ok(options(route)),
        (route, method) => Err(ApiError::MethodNotAllowed(method, route.allowed())),
    }
}

/// `OPTIONS` outside CORS preflight: what the route allows.
fn options(route: Route) -> Response<Body> {
    let mut response = crate::http::response::ok(&serde_json::json!({ "allow": route.allowed() }));
    response.headers_mut().insert(
        hyper::header::ALLOW,
        hyper::header::HeaderValue::from_static(route.allowed()),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_route_sets_resolve() {
        assert_eq!(Route::resolve("/auth/login/"), Some(Route::Login));
        assert_eq!(Route::resolve("/api/token/"), Some(Route::Login));
        assert_eq!(Route::resolve("/api/token/blacklist"), Some(Route::Logout));
        assert_eq!(
            Route::resolve("/api/chats/chats/7/messages/"),
            Some(Route::Messages(7))
        );
        assert_eq!(
            Route::resolve("/api/chat/chats/7/messages"),
            Some(Route::Messages(7))
        );
        assert_eq!(Route::resolve("/"), Some(Route::Demo));
        assert_eq!(Route::resolve("/index.html"), Some(Route::Demo));
        assert_eq!(Route::resolve("/chat-client.js"), Some(Route::ClientScript));
    }

    #[test]
    fn every_listed_route_resolves() {
        for (_, template) in ROUTES {
            let path = template.replace("{chat_id}", "1");
            assert!(Route::resolve(&path).is_some(), "{template}");
        }
    }

    #[test]
    fn bad_ids_and_unknown_paths_do_not_resolve() {
        for path in [
            "/api/chat/chats/abc/messages/",
            "/api/chat/chats/0/messages/",
            "/api/chat/chats/-1/messages/",
            "/api/chat/chats/+1/messages/",
            "/api/chat/chats/99999999999999999999/messages/",
            "/api/chat/chats//messages/",
            "/auth/login//",
            "",
            "auth/login/",
            "/api/chat/chats/7/messages/more",
            "/api/chat/chats/7/messages/more/and/more/",
            "/a/b/c/d/e/f/g/h",
        ] {
            assert_eq!(Route::resolve(path), None, "{path}");
        }
    }
}
