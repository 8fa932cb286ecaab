//! Who a connecting client is: a session id issued by `POST /api/sessions`, or an HS256
//! JWT (`sub` = user id, `exp` required, `nbf` honoured). Every refusal is UNAUTHORIZED.

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use serde_json::Value;

use super::error::GatewayError;
use super::validate::check_user_id;
use crate::fanout::SharedFanout;

/// The authenticated identity of a socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub user_id: String,
    /// The session used, when the client authenticated with one (for revocation).
    pub session_id: Option<String>,
}

#[derive(Deserialize)]
struct Claims {
    sub: Option<String>,
}

/// Checks credentials.
pub struct Authenticator {
    jwt: Option<(DecodingKey, Validation)>,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("jwt", &self.jwt.is_some())
            .finish()
    }
}

fn unauthorized(msg: &str) -> GatewayError {
    GatewayError::Unauthorized(msg.to_owned())
}

impl Authenticator {
    /// JWTs are accepted only when a secret is configured.
    pub fn new(jwt_secret: Option<&str>) -> Authenticator {
        let jwt = jwt_secret.map(|s| {
            let mut v = Validation::new(Algorithm::HS256);
            v.algorithms = vec![Algorithm::HS256];
            v.validate_exp = true;
            v.validate_nbf = true;
            v.leeway = 5;
            v.set_required_spec_claims(&["exp", "sub"]);
            (DecodingKey::from_secret(s.as_bytes()), v)
        });
        Authenticator { jwt }
    }

    /// Authenticates a CONNECT's `auth` object.
    pub async fn authenticate(
        &self,
        auth: &Value,
        fanout: &SharedFanout,
    ) -> Result<Identity, GatewayError> {
        if let Some(sid) = auth.get("sessionId") {
            let sid = sid
                .as_str()
                .filter(|s| !s.is_empty() && s.len() <= 128)
                .ok_or_else(|| unauthorized("sessionId must be a non-empty string"))?;
            return match fanout.session(sid).await {
                Ok(Some(s)) => Ok(Identity {
                    user_id: s.user_id,
                    session_id: Some(sid.to_owned()),
                }),
                Ok(None) => Err(unauthorized("unknown, expired or revoked session")),
                Err(e) => Err(GatewayError::from(e)),
            };
        }
        if let Some(token) = auth.get("token") {
            let token = token
                .as_str()
                .filter(|t| t.len() <= 8192)
                .ok_or_else(|| unauthorized("token must be a string"))?;
            let (key, validation) = self
                .jwt
                .as_ref()
                .ok_or_else(|| unauthorized("JWT authentication is not enabled on this server"))?;
            let data = jsonwebtoken::decode::<Claims>(token, key, validation)
                .map_err(|e| unauthorized(&format!("invalid token: {e}")))?;
            let sub = data
                .claims
                .sub
                .ok_or_else(|| unauthorized("token has no sub"))?;
            check_user_id(&sub).map_err(|_| unauthorized("token sub is not a valid user id"))?;
            return Ok(Identity {
                user_id: sub,
                session_id: None,
            });
        }
        Err(unauthorized(
            "missing credentials: connect with auth { sessionId } or auth { token }",
        ))
    }
}
