//! Typed query strings of the v1 routes. Each route's query is one type: the handler
//! decodes it with the [`Query`] extractor and the OpenAPI document lists its parameters
//! from the same type (`IntoParams`), so a parameter's name, presence and field type
//! cannot differ between the two. Each field's type validates itself ([`Param`]) and
//! says which 400 code a bad value gets; the bounds the document states beside each
//! field are held to the parsers by tests (`openapi_tests.rs`).
//!
//! Decoding is strict, as before: percent-escapes and UTF-8 as [`params::form_pairs`]
//! reads them, an unknown or repeated parameter is 400 `bad_query`.

use std::collections::HashMap;
use std::time::Duration;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use utoipa::{IntoParams, ToSchema};

use super::params::{self, MAX_REVISION};
use crate::api::error::ApiError;
use crate::ring::MAX_DB;
use crate::router::Consistency;

/// One query parameter's value, parsed and validated from its decoded text.
pub trait Param: Sized {
    fn parse(text: &str) -> Result<Self, ApiError>;
}

/// A route's whole query string.
pub trait FromQuery: Sized {
    /// The parameters the route takes (anything else is refused).
    const NAMES: &'static [&'static str];
    fn from_pairs(pairs: &mut HashMap<String, String>) -> Result<Self, ApiError>;
}

/// Extracts a route's typed query (400 with the field's code when it is bad).
pub struct Query<T>(pub T);

impl<S: Send + Sync, T: FromQuery> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let mut pairs = params::query(parts.uri.query(), T::NAMES)?;
        T::from_pairs(&mut pairs).map(Query)
    }
}

/// A field that may be absent: its default then.
pub trait Field: Sized {
    fn from_text(text: Option<String>) -> Result<Self, ApiError>;
}

impl<T: Param> Field for Option<T> {
    fn from_text(text: Option<String>) -> Result<Self, ApiError> {
        text.as_deref().map(T::parse).transpose()
    }
}

/// Declares a route's query type: the struct (with its `IntoParams` documentation) and
/// its decoder, from one list of fields.
macro_rules! query_type {
    ($(#[$meta:meta])* pub struct $name:ident { $($(#[$fmeta:meta])* pub $field:ident: $ty:ty,)* }) => {
        $(#[$meta])*
        #[derive(Debug, IntoParams)]
        #[into_params(parameter_in = Query)]
        pub struct $name { $($(#[$fmeta])* pub $field: $ty,)* }

        impl FromQuery for $name {
            const NAMES: &'static [&'static str] = &[$(stringify!($field)),*];
            fn from_pairs(pairs: &mut HashMap<String, String>) -> Result<Self, ApiError> {
                Ok(Self { $($field: Field::from_text(pairs.remove(stringify!($field)))?,)* })
            }
        }
    };
}

/// `db`: 0..=15 (absent: 0).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Db(pub u8);

impl Field for Db {
    fn from_text(text: Option<String>) -> Result<Self, ApiError> {
        Ok(Option::<Db>::from_text(text)?.unwrap_or_default())
    }
}

impl Param for Db {
    fn parse(s: &str) -> Result<Self, ApiError> {
        s.parse::<u8>()
            .ok()
            .filter(|d| *d <= MAX_DB)
            .map(Db)
            .ok_or_else(|| ApiError::bad_request("bad_db", format!("db must be an integer 0..={MAX_DB}, got `{s}`")))
    }
}

/// `ttl`: a duration with units or plain seconds (see [`params::ttl`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ttl(pub Duration);

impl Param for Ttl {
    fn parse(s: &str) -> Result<Self, ApiError> {
        params::ttl(s).map(Ttl)
    }
}

/// `prev_revision`: a compare-and-swap precondition, 0..=2^53-1 (0: only if absent).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PrevRevision(pub u64);

impl Param for PrevRevision {
    fn parse(s: &str) -> Result<Self, ApiError> {
        s.parse::<u64>().ok().filter(|r| *r <= MAX_REVISION).map(PrevRevision).ok_or_else(|| {
            ApiError::bad_request(
                "bad_revision",
                format!("prev_revision must be an integer 0..={MAX_REVISION}, got `{s}`"),
            )
        })
    }
}

/// `start_revision`: where a watch's replay starts, 1..=2^53-1.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StartRevision(pub u64);

impl Param for StartRevision {
    fn parse(s: &str) -> Result<Self, ApiError> {
        s.parse::<u64>().ok().filter(|r| (1..=MAX_REVISION).contains(r)).map(StartRevision).ok_or_else(|| {
            ApiError::bad_request("bad_revision", format!("start_revision must be an integer 1..={MAX_REVISION}"))
        })
    }
}

impl Param for Consistency {
    fn parse(s: &str) -> Result<Self, ApiError> {
        match s {
            "linearizable" => Ok(Consistency::Linearizable),
            "serializable" => Ok(Consistency::Serializable),
            other => Err(ApiError::bad_request(
                "bad_consistency",
                format!("consistency must be `linearizable` or `serializable`, got `{other}`"),
            )),
        }
    }
}

// The document's name for the choices of `consistency` (decoded by `Consistency`'s
// `Param` above); only its schema is used.
/// How a read is served.
#[derive(serde::Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
#[schema(as = Consistency)]
#[allow(dead_code)]
pub enum ConsistencyDoc {
    Linearizable,
    Serializable,
}

/// Most keys one listing page returns.
pub const MAX_LIST_LIMIT: usize = 1000;

/// `limit`: a listing's page size, 1..=1000.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limit(pub usize);

impl Param for Limit {
    fn parse(s: &str) -> Result<Self, ApiError> {
        s.parse::<usize>()
            .ok()
            .filter(|l| (1..=MAX_LIST_LIMIT).contains(l))
            .map(Limit)
            .ok_or_else(|| ApiError::bad_request("bad_limit", format!("limit must be an integer 1..={MAX_LIST_LIMIT}")))
    }
}

/// `cursor`: the key a listing page ended at, as the server returned it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cursor(pub Vec<u8>);

impl Param for Cursor {
    fn parse(s: &str) -> Result<Self, ApiError> {
        params::decode_cursor(s).map(Cursor)
    }
}

/// Free text (a key or a prefix, checked by the handler against the node's limits).
impl Param for String {
    fn parse(s: &str) -> Result<Self, ApiError> {
        Ok(s.to_owned())
    }
}

query_type! {
    /// Query of `PUT /v1/kv/{key}`. Unknown parameters are refused (400 `bad_query`).
    pub struct PutQuery {
        /// Database 0..=15 (default 0).
        #[param(value_type = Option<u8>, minimum = 0, maximum = 15)]
        pub db: Db,
        /// `500ms`, `5s`, `10m`, `1h` or plain seconds (also `1m30s`, `1.5`); not together
        /// with a JSON `ttl`.
        #[param(value_type = Option<String>, pattern = "^([1-9][0-9]{0,3}(ms|s|m|h)?|[1-9][0-9]{0,3}\\.[0-9]{0,6}|0?\\.[0-9]{0,5}[1-9][0-9]{0,3})$")]
        pub ttl: Option<Ttl>,
        /// Compare-and-swap: 0 = only if absent, else the key's mod_revision must equal it
        /// (409 `revision_mismatch` otherwise).
        #[param(value_type = Option<u64>, minimum = 0, maximum = 9007199254740991_f64)]
        pub prev_revision: Option<PrevRevision>,
    }
}

query_type! {
    /// Query of `GET /v1/kv/{key}`.
    pub struct GetQuery {
        #[param(value_type = Option<u8>, minimum = 0, maximum = 15)]
        pub db: Db,
        /// `linearizable` (default: confirmed with the shard leader) or `serializable`
        /// (this node's replica).
        #[param(value_type = Option<ConsistencyDoc>, inline)]
        pub consistency: Option<Consistency>,
    }
}

query_type! {
    /// Query of `DELETE /v1/kv/{key}`.
    pub struct DeleteQuery {
        #[param(value_type = Option<u8>, minimum = 0, maximum = 15)]
        pub db: Db,
        /// 0 = only if absent, else the key's mod_revision must equal it.
        #[param(value_type = Option<u64>, minimum = 0, maximum = 9007199254740991_f64)]
        pub prev_revision: Option<PrevRevision>,
    }
}

query_type! {
    /// Query of `GET /v1/kv`.
    pub struct ListQuery {
        #[param(value_type = Option<u8>, minimum = 0, maximum = 15)]
        pub db: Db,
        /// Only keys starting with this (default: all).
        #[param(value_type = Option<String>)]
        pub prefix: Option<String>,
        /// Page size (default 100).
        #[param(value_type = Option<u32>, minimum = 1, maximum = 1000)]
        pub limit: Option<Limit>,
        /// `next_cursor` of the previous page (unpadded base64url).
        #[param(value_type = Option<String>, pattern = "^(?:[A-Za-z0-9_-]{4})*(?:[A-Za-z0-9_-][AQgw]|[A-Za-z0-9_-]{2}[AEIMQUYcgkosw048])?$")]
        pub cursor: Option<Cursor>,
        /// `linearizable` (default) or `serializable`.
        #[param(value_type = Option<ConsistencyDoc>, inline)]
        pub consistency: Option<Consistency>,
    }
}

query_type! {
    /// Query of `GET /v1/watch`: `key` or `prefix`, not both; neither watches the whole
    /// database.
    pub struct WatchQuery {
        #[param(value_type = Option<String>, min_length = 1)]
        pub key: Option<String>,
        #[param(value_type = Option<String>)]
        pub prefix: Option<String>,
        #[param(value_type = Option<u8>, minimum = 0, maximum = 15)]
        pub db: Db,
        /// Replay history from this revision (>= 1) before live events; default: from now
        /// (after every write acknowledged before the watch opened, as the shard leader
        /// confirms it; 503 when a shard has no leader).
        #[param(value_type = Option<u64>, minimum = 1, maximum = 9007199254740991_f64)]
        pub start_revision: Option<StartRevision>,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode<T: FromQuery>(raw: &str) -> Result<T, ApiError> {
        let mut pairs = params::query(Some(raw), T::NAMES)?;
        T::from_pairs(&mut pairs)
    }

    #[test]
    fn each_route_reads_its_own_parameters_with_their_defaults() {
        let q: PutQuery = decode("db=3&ttl=5s&prev_revision=0").unwrap();
        assert_eq!((q.db, q.ttl, q.prev_revision), (Db(3), Some(Ttl(Duration::from_secs(5))), Some(PrevRevision(0))));
        let q: GetQuery = decode("").unwrap();
        assert_eq!((q.db, q.consistency), (Db(0), None));
        let q: ListQuery = decode("prefix=a%2Fb&limit=7&consistency=serializable").unwrap();
        assert_eq!(q.prefix.as_deref(), Some("a/b"));
        assert_eq!((q.limit, q.consistency), (Some(Limit(7)), Some(Consistency::Serializable)));
        let q: WatchQuery = decode("key=k&start_revision=9").unwrap();
        assert_eq!((q.key.as_deref(), q.start_revision), (Some("k"), Some(StartRevision(9))));
    }

    #[test]
    fn db_must_be_0_to_15() {
        assert_eq!(decode::<GetQuery>("").unwrap().db, Db(0));
        assert_eq!(decode::<GetQuery>("db=15").unwrap().db, Db(15));
        for bad in ["16", "-1", "x", "", "256"] {
            assert_eq!(Db::parse(bad).unwrap_err().code(), "bad_db", "{bad}");
        }
    }

    #[test]
    fn bad_values_get_their_fields_codes() {
        fn code<T: FromQuery + std::fmt::Debug>(raw: &str) -> String {
            decode::<T>(raw).unwrap_err().code().to_owned()
        }
        assert_eq!(code::<PutQuery>("db=16"), "bad_db");
        assert_eq!(code::<PutQuery>("ttl=0"), "bad_ttl");
        assert_eq!(code::<DeleteQuery>("prev_revision=9007199254740992"), "bad_revision");
        assert_eq!(code::<WatchQuery>("start_revision=0"), "bad_revision");
        assert_eq!(code::<GetQuery>("consistency="), "bad_consistency");
        assert_eq!(code::<ListQuery>("limit=1001"), "bad_limit");
        assert_eq!(code::<ListQuery>("cursor=!"), "bad_cursor");
        assert_eq!(code::<GetQuery>("ttl=5s"), "bad_query");
        assert_eq!(code::<GetQuery>("db=1&db=2"), "bad_query");
    }

    /// The document's parameters are the decoder's, name for name, for every route.
    #[test]
    fn the_document_lists_exactly_what_each_route_reads() {
        fn names<T: IntoParams + FromQuery>() -> (Vec<String>, Vec<String>) {
            let mut doc: Vec<String> = T::into_params(|| None).into_iter().map(|p| p.name).collect();
            let mut read: Vec<String> = T::NAMES.iter().map(|n| n.to_string()).collect();
            doc.sort();
            read.sort();
            (doc, read)
        }
        for (doc, read) in [
            names::<PutQuery>(),
            names::<GetQuery>(),
            names::<DeleteQuery>(),
            names::<ListQuery>(),
            names::<WatchQuery>(),
        ] {
            assert_eq!(doc, read);
        }
    }

    /// Every integer bound the document states is the decoder's: the bounds are
    /// accepted, one past them refused.
    #[test]
    fn the_documented_bounds_are_the_decoders() {
        fn check<T: IntoParams + FromQuery + std::fmt::Debug>() -> usize {
            let mut checked = 0;
            for p in T::into_params(|| None) {
                let p = serde_json::to_value(&p).unwrap();
                let (name, schema) = (p["name"].as_str().unwrap(), &p["schema"]);
                let bound = |b: &serde_json::Value| b.as_f64().map(|f| f as u64);
                let (Some(min), Some(max)) = (bound(&schema["minimum"]), bound(&schema["maximum"])) else { continue };
                checked += 1;
                for ok in [min, max] {
                    assert!(decode::<T>(&format!("{name}={ok}")).is_ok(), "{name}={ok} documented, refused");
                }
                let mut outside = vec![max + 1];
                outside.extend(min.checked_sub(1));
                for bad in outside {
                    assert!(
                        decode::<T>(&format!("{name}={bad}")).is_err(),
                        "{name}={bad} out of the document, accepted"
                    );
                }
            }
            checked
        }
        let checked = check::<PutQuery>()
            + check::<GetQuery>()
            + check::<DeleteQuery>()
            + check::<ListQuery>()
            + check::<WatchQuery>();
        // db on five routes, prev_revision twice, limit, start_revision.
        assert_eq!(checked, 9);
    }
}
