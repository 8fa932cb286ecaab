//! Input checks of the contract: symbols, room names, event names, `since` markers.

use serde_json::Value;

use super::error::GatewayError;

/// `^[A-Z0-9.\-]{1,15}$`.
pub fn is_symbol(s: &str) -> bool {
    (1..=15).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
}

/// Room names: 1..=200 printable characters, no control characters.
pub fn check_room(room: &str) -> Result<(), GatewayError> {
    if room.is_empty() || room.len() > 200 || room.chars().any(char::is_control) {
        return Err(GatewayError::InvalidPayload(
            "room must be 1 to 200 printable characters".into(),
        ));
    }
    Ok(())
}

/// Event names: 1..=100 printable characters.
pub fn check_event_name(event: &str) -> Result<(), GatewayError> {
    if event.is_empty() || event.len() > 100 || event.chars().any(char::is_control) {
        return Err(GatewayError::InvalidPayload(
            "event must be 1 to 100 printable characters".into(),
        ));
    }
    Ok(())
}

/// User ids: 1..=128 characters of `[A-Za-z0-9_.@:-]`.
pub fn check_user_id(user: &str) -> Result<(), GatewayError> {
    let ok = (1..=128).contains(&user.len())
        && user
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'@' | b':' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(GatewayError::InvalidPayload(
            "userId must be 1 to 128 characters of A-Z a-z 0-9 _ . @ : -".into(),
        ))
    }
}

/// A client's last seen position in a room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Since {
    pub offset: u64,
    pub epoch: String,
}

/// Reads `since: { offset, epoch }` (absent or null = none).
pub fn parse_since(v: Option<&Value>) -> Result<Option<Since>, GatewayError> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(m)) => {
            let offset = m.get("offset").and_then(Value::as_u64);
            let epoch = m.get("epoch").and_then(Value::as_str);
            match (offset, epoch) {
                (Some(offset), Some(epoch)) if epoch.len() <= 64 => Ok(Some(Since {
                    offset,
                    epoch: epoch.to_owned(),
                })),
                _ => Err(GatewayError::InvalidPayload(
                    "since must be { offset: number >= 0, epoch: string }".into(),
                )),
            }
        }
        Some(_) => Err(GatewayError::InvalidPayload(
            "since must be { offset, epoch }".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn symbols() {
        for ok in ["AAPL", "BRK.B", "X", "ABC-1", "123456789012345"] {
            assert!(is_symbol(ok), "{ok}");
        }
        for bad in ["", "aapl", "AAPL ", "1234567890123456", "A_B", "ÄB", "A/B"] {
            assert!(!is_symbol(bad), "{bad}");
        }
    }

    #[test]
    fn since_parsing() {
        assert_eq!(parse_since(None), Ok(None));
        assert_eq!(parse_since(Some(&json!(null))), Ok(None));
        assert_eq!(
            parse_since(Some(&json!({"offset": 3, "epoch": "e"}))),
            Ok(Some(Since {
                offset: 3,
                epoch: "e".into()
            }))
        );
        for bad in [
            json!(3),
            json!({"offset": -1, "epoch": "e"}),
            json!({"offset": 1}),
            json!({"offset": "1", "epoch": "e"}),
        ] {
            assert!(parse_since(Some(&bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn names() {
        assert!(check_room("user:1").is_ok());
        assert!(check_room("").is_err());
        assert!(check_room("a\nb").is_err());
        assert!(check_user_id("alice@x.io").is_ok());
        assert!(check_user_id("a b").is_err());
        assert!(check_event_name("trade:executed").is_ok());
        assert!(check_event_name(&"x".repeat(101)).is_err());
    }
}
