//! Keyset pagination: page size and opaque cursors.
//!
//! A cursor is the sort key of the last item of a page, tagged with its kind
//! and encoded as unpadded base64url, so clients treat it as an opaque token.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use uuid::Uuid;

use crate::error::ApiError;

/// Page size when the client gives none.
pub const DEFAULT_LIMIT: u32 = 20;
/// Largest page size a client may ask for.
pub const MAX_LIMIT: u32 = 100;

/// The `?limit=&after=` parameters of a list endpoint.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageParams {
    /// Items per page, 1..=100 (default 20).
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<u32>,
    /// The `next` cursor of the previous page.
    pub after: Option<String>,
}

impl PageParams {
    /// The validated page size.
    pub fn limit(&self) -> Result<u32, ApiError> {
        match self.limit {
            None => Ok(DEFAULT_LIMIT),
            Some(limit @ 1..=MAX_LIMIT) => Ok(limit),
            Some(other) => Err(ApiError::BadRequest(format!(
                "`limit` must be between 1 and {MAX_LIMIT}, got {other}"
            ))),
        }
    }

    /// The decoded `after` cursor, if any.
    pub fn cursor<C: Cursor>(&self) -> Result<Option<C>, ApiError> {
        self.after.as_deref().map(C::decode).transpose()
    }
}

/// The sort key of a list item, as an opaque token.
pub trait Cursor: Sized {
    /// The token.
    fn encode(&self) -> String;
    /// The key back from a token; 400 when it is not one of ours.
    fn decode(token: &str) -> Result<Self, ApiError>;
}

/// Position in a user's orders, newest first: `(placed_at, order_id)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OrderCursor {
    /// When the last order of the page was placed.
    pub placed_at: DateTime<Utc>,
    /// Its id, breaking ties between orders placed at the same microsecond.
    pub order_id: Uuid,
}

const ORDER_TAG: u8 = b'o';
const PRODUCT_TAG: u8 = b'p';

impl Cursor for OrderCursor {
    fn encode(&self) -> String {
        let mut bytes = Vec::with_capacity(25);
        bytes.push(ORDER_TAG);
        bytes.extend_from_slice(&self.placed_at.timestamp_micros().to_be_bytes());
        bytes.extend_from_slice(self.order_id.as_bytes());
        URL_SAFE_NO_PAD.encode(bytes)
    }

    fn decode(token: &str) -> Result<Self, ApiError> {
        let bytes = decode_tagged(token, ORDER_TAG)?;
        let (micros, id) = bytes.split_at_checked(8).ok_or_else(invalid_cursor)?;
        let micros = i64::from_be_bytes(micros.try_into().map_err(|_| invalid_cursor())?);
        Ok(Self {
            placed_at: DateTime::from_timestamp_micros(micros).ok_or_else(invalid_cursor)?,
            order_id: Uuid::from_slice(id).map_err(|_| invalid_cursor())?,
        })
    }
}

/// Position in the catalog, by name then id: `(name, product_id)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProductCursor {
    /// The name of the last product of the page.
    pub name: String,
    /// Its id, breaking ties between products of the same name.
    pub product_id: Uuid,
}

impl Cursor for ProductCursor {
    fn encode(&self) -> String {
        let mut bytes = Vec::with_capacity(17 + self.name.len());
        bytes.push(PRODUCT_TAG);
        bytes.extend_from_slice(self.product_id.as_bytes());
        bytes.extend_from_slice(self.name.as_bytes());
        URL_SAFE_NO_PAD.encode(bytes)
    }

    fn decode(token: &str) -> Result<Self, ApiError> {
        let bytes = decode_tagged(token, PRODUCT_TAG)?;
        let (id, name) = bytes.split_at_checked(16).ok_or_else(invalid_cursor)?;
        Ok(Self {
            product_id: Uuid::from_slice(id).map_err(|_| invalid_cursor())?,
            name: String::from_utf8(name.to_vec()).map_err(|_| invalid_cursor())?,
        })
    }
}

fn decode_tagged(token: &str, tag: u8) -> Result<Vec<u8>, ApiError> {
    let mut bytes = URL_SAFE_NO_PAD
        .decode(token)
        .map_err(|_| invalid_cursor())?;
    if bytes.first() != Some(&tag) {
        return Err(invalid_cursor());
    }
    bytes.remove(0);
    Ok(bytes)
}

fn invalid_cursor() -> ApiError {
    ApiError::BadRequest("`after` is not a cursor returned by this endpoint".to_owned())
}

/// Splits the `limit + 1` rows fetched for a page into the page and the
/// cursor of the next one (`None` on the last page).
pub fn into_page<T, C: Cursor>(
    mut rows: Vec<T>,
    limit: u32,
    cursor_of: impl Fn(&T) -> C,
) -> (Vec<T>, Option<String>) {
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    if rows.len() <= limit {
        return (rows, None);
    }
    rows.truncate(limit);
    let next = rows.last().map(|row| cursor_of(row).encode());
    (rows, next)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_cursor_round_trips() {
        let cursor = OrderCursor {
            placed_at: DateTime::from_timestamp_micros(1_700_000_000_123_456).unwrap(),
            order_id: Uuid::now_v7(),
        };
        assert_eq!(OrderCursor::decode(&cursor.encode()).unwrap(), cursor);
    }

    #[test]
    fn product_cursor_round_trips() {
        let cursor = ProductCursor {
            name: "Tasse à café ☕".to_owned(),
            product_id: Uuid::new_v4(),
        };
        assert_eq!(ProductCursor::decode(&cursor.encode()).unwrap(), cursor);
    }

    #[test]
    fn foreign_or_garbled_cursors_are_rejected() {
        let product = ProductCursor {
            name: String::new(),
            product_id: Uuid::new_v4(),
        }
        .encode();
        for token in ["", "!!!", "b2s", &product, "bw"] {
            assert!(
                matches!(OrderCursor::decode(token), Err(ApiError::BadRequest(_))),
                "{token:?} accepted"
            );
        }
    }

    #[test]
    fn limit_is_bounded() {
        let params = |limit| PageParams { limit, after: None };
        assert_eq!(params(None).limit().unwrap(), DEFAULT_LIMIT);
        assert_eq!(params(Some(1)).limit().unwrap(), 1);
        assert_eq!(params(Some(MAX_LIMIT)).limit().unwrap(), MAX_LIMIT);
        assert!(params(Some(0)).limit().is_err());
        assert!(params(Some(MAX_LIMIT + 1)).limit().is_err());
    }

    #[test]
    fn pages_end_without_a_cursor() {
        let cursor = |n: &u32| OrderCursor {
            placed_at: DateTime::from_timestamp_micros(i64::from(*n)).unwrap(),
            order_id: Uuid::nil(),
        };
        let (page, next) = into_page(vec![1, 2, 3], 3, cursor);
        assert_eq!((page, next), (vec![1, 2, 3], None));
        let (page, next) = into_page(vec![1, 2, 3, 4], 3, cursor);
        assert_eq!(page, vec![1, 2, 3]);
        assert_eq!(next, Some(cursor(&3).encode()));
    }
}
