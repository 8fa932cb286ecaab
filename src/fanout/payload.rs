//! The payload of a published event: its JSON text (binary attachments as placeholders)
//! and the attachments, with a compact byte encoding for storage and replication.

use bytes::Bytes;

/// What a backend published: `data` is JSON text; `attachments` are referenced from it by
/// Socket.IO placeholders `{"_placeholder":true,"num":i}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payload {
    pub data: String,
    pub attachments: Vec<Bytes>,
}

/// Why stored bytes are not a payload.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PayloadError {
    #[error("truncated payload")]
    Truncated,
    #[error("payload data is not UTF-8")]
    Utf8,
}

impl Payload {
    /// A payload of JSON text without attachments.
    pub fn json(data: impl Into<String>) -> Payload {
        Payload {
            data: data.into(),
            attachments: Vec::new(),
        }
    }

    /// Encodes as `u32 len | data | u32 n | (u32 len | bytes)*`, little-endian.
    pub fn to_bytes(&self) -> Vec<u8> {
        let size =
            8 + self.data.len() + self.attachments.iter().map(|a| 4 + a.len()).sum::<usize>();
        let mut out = Vec::with_capacity(size);
        push_len(&mut out, self.data.len());
        out.extend_from_slice(self.data.as_bytes());
        push_len(&mut out, self.attachments.len());
        for a in &self.attachments {
            push_len(&mut out, a.len());
            out.extend_from_slice(a);
        }
        out
    }

    /// Decodes what [`Payload::to_bytes`] wrote.
    pub fn from_bytes(mut b: &[u8]) -> Result<Payload, PayloadError> {
        let data = take(&mut b)?;
        let data = std::str::from_utf8(data)
            .map_err(|_| PayloadError::Utf8)?
            .to_owned();
        let n = read_len(&mut b)?;
        let mut attachments = Vec::with_capacity(n.min(64));
        for _ in 0..n {
            attachments.push(Bytes::copy_from_slice(take(&mut b)?));
        }
        Ok(Payload { data, attachments })
    }
}

fn push_len(out: &mut Vec<u8>, n: usize) {
    out.extend_from_slice(&u32::try_from(n).unwrap_or(u32::MAX).to_le_bytes());
}

fn read_len(b: &mut &[u8]) -> Result<usize, PayloadError> {
    let (head, rest) = b.split_first_chunk::<4>().ok_or(PayloadError::Truncated)?;
    *b = rest;
    Ok(u32::from_le_bytes(*head) as usize)
}

fn take<'a>(b: &mut &'a [u8]) -> Result<&'a [u8], PayloadError> {
    let n = read_len(b)?;
    if b.len() < n {
        return Err(PayloadError::Truncated);
    }
    let (head, rest) = b.split_at(n);
    *b = rest;
    Ok(head)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip() {
        let p = Payload {
            data: r#"{"a":{"_placeholder":true,"num":0}}"#.into(),
            attachments: vec![Bytes::from_static(&[0, 1, 255])],
        };
        assert_eq!(Payload::from_bytes(&p.to_bytes()), Ok(p));
        let q = Payload::json("null");
        assert_eq!(Payload::from_bytes(&q.to_bytes()), Ok(q));
    }

    #[test]
    fn rejects_garbage_without_panic() {
        assert_eq!(Payload::from_bytes(&[]), Err(PayloadError::Truncated));
        assert_eq!(
            Payload::from_bytes(&[5, 0, 0, 0, b'a']),
            Err(PayloadError::Truncated)
        );
        assert_eq!(
            Payload::from_bytes(&[1, 0, 0, 0, 0xff, 0, 0, 0, 0]),
            Err(PayloadError::Utf8)
        );
        // a huge announced attachment count does not allocate it up front
        assert_eq!(
            Payload::from_bytes(&[0, 0, 0, 0, 255, 255, 255, 255]),
            Err(PayloadError::Truncated)
        );
    }
}
