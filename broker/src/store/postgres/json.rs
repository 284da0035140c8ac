//! Records go to and from PostgreSQL as JSON text, exactly the bytes serde
//! wrote and reads: no detour through a parsed value.

use bytes::{BufMut, BytesMut};
use tokio_postgres::types::{to_sql_checked, FromSql, IsNull, ToSql, Type};

type BoxError = Box<dyn std::error::Error + Sync + Send>;

/// `jsonb`'s binary form is a version byte, then the text.
const JSONB_VERSION: u8 = 1;

/// JSON text written as a `json` (or `jsonb`) parameter.
#[derive(Debug)]
pub struct JsonOut<'a>(pub &'a [u8]);

impl ToSql for JsonOut<'_> {
    fn to_sql(&self, ty: &Type, out: &mut BytesMut) -> Result<IsNull, BoxError> {
        if *ty == Type::JSONB {
            out.put_u8(JSONB_VERSION);
        }
        out.put_slice(self.0);
        Ok(IsNull::No)
    }

    fn accepts(ty: &Type) -> bool {
        matches!(*ty, Type::JSON | Type::JSONB)
    }

    to_sql_checked!();
}

/// A `json` (or `jsonb`) column's text, borrowed from the row.
#[derive(Debug)]
pub struct JsonIn<'a>(pub &'a [u8]);

impl<'a> FromSql<'a> for JsonIn<'a> {
    fn from_sql(ty: &Type, raw: &'a [u8]) -> Result<Self, BoxError> {
        if *ty == Type::JSONB {
            return match raw.split_first() {
                Some((&JSONB_VERSION, text)) => Ok(JsonIn(text)),
                _ => Err("unsupported jsonb encoding version".into()),
            };
        }
        Ok(JsonIn(raw))
    }

    fn accepts(ty: &Type) -> bool {
        matches!(*ty, Type::JSON | Type::JSONB)
    }
}
