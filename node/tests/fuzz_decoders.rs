//! A bounded property-test run over the request decoders and WAL replay (a few seconds;
//! the long runs are the cargo-fuzz targets in `fuzz/`, which share this oracle).
//!
//! Inputs are built from the grammar each decoder expects, bent in the ways clients get
//! it wrong (bad escapes, units, signs, huge numbers, invalid UTF-8, truncation), and
//! mixed with arbitrary strings. What must hold is in `fuzz_support/oracle.rs`.

#[path = "fuzz_support/oracle.rs"]
mod oracle;

use proptest::prelude::*;

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig { cases, ..ProptestConfig::default() }
}

/// Query values that probe each parameter decoder.
fn query_value() -> impl Strategy<Value = String> {
    prop_oneof![
        "-?[0-9]{0,4}",
        "[0-9]{10,25}",
        "[0-9.]{0,8}(ns|us|ms|s|m|h|d|w|y|parsecs)?",
        "(linearizable|serializable|eventual)",
        "[A-Za-z0-9_+/=-]{0,12}",
        "(%[0-9A-Fa-f]{2}|%[G-Z]?|\\+|[a-z]){0,8}",
        any::<String>(),
    ]
}

fn query_string() -> impl Strategy<Value = String> {
    let name = prop_oneof![
        Just("db"),
        Just("ttl"),
        Just("cursor"),
        Just("consistency"),
        Just("key"),
        Just("limit"),
        Just("prefix"),
        Just("tll"),
        Just("d%62"),
        Just(""),
    ];
    prop_oneof![
        prop::collection::vec((name, prop::option::of(query_value())), 0..5).prop_map(|pairs| {
            pairs
                .into_iter()
                .map(|(k, v)| match v {
                    Some(v) => format!("{k}={v}"),
                    None => k.to_string(),
                })
                .collect::<Vec<_>>()
                .join("&")
        }),
        any::<String>(),
    ]
}

fn ttl_string() -> impl Strategy<Value = String> {
    prop_oneof![
        "[0-9.]{0,20}",
        "[ +-]?[0-9]{1,22}(\\.[0-9]{0,4})? ?(ns|us|µs|ms|s|sec|m|min|h|hours|d|days|w|M|y|years|x)?",
        "([0-9]{1,6}(ms|s|m|h|d)){1,4}",
        "(NaN|inf|-inf|1e9|1e400|0x10|\\.|\\.\\.)",
        any::<String>(),
    ]
}

fn json_ttl() -> impl Strategy<Value = serde_json::Value> {
    prop_oneof![
        any::<i64>().prop_map(serde_json::Value::from),
        any::<u64>().prop_map(serde_json::Value::from),
        any::<f64>().prop_map(serde_json::Value::from), // non-finite becomes null
        (0.0f64..1e12).prop_map(serde_json::Value::from),
        ttl_string().prop_map(serde_json::Value::from),
        any::<bool>().prop_map(serde_json::Value::from),
        Just(serde_json::Value::Null),
        Just(serde_json::json!([1])),
        Just(serde_json::json!({"s": 1})),
    ]
}

/// JSON bodies with the fields the decoders know, wrong types, extra fields, and damage:
/// truncation or invalid UTF-8 spliced into the text.
fn json_body(fields: &'static [&'static str]) -> impl Strategy<Value = Vec<u8>> {
    let field_value = prop_oneof![
        "[ -~]{0,12}".prop_map(serde_json::Value::from),
        "[A-Za-z0-9+/]{0,12}={0,2}".prop_map(serde_json::Value::from),
        prop_oneof![Just("utf8"), Just("base64"), Just("utf-8"), Just("rot13")].prop_map(serde_json::Value::from),
        json_ttl(),
    ];
    let name = prop::sample::select(fields.iter().copied().chain(["colour"]).collect::<Vec<_>>());
    let object = prop::collection::btree_map(name, field_value, 0..5)
        .prop_map(|m| serde_json::Value::Object(m.into_iter().map(|(k, v)| (k.to_string(), v)).collect()));
    let damage = prop_oneof![
        4 => Just(None),
        1 => (any::<usize>(), prop::collection::vec(prop_oneof![Just(0xffu8), Just(0xc3), Just(0x80), Just(0xed), any::<u8>()], 1..4))
            .prop_map(Some),
    ];
    let truncate = prop::option::of(any::<usize>());
    (object, damage, truncate).prop_map(|(v, damage, truncate)| {
        let mut bytes = v.to_string().into_bytes();
        if let Some((at, junk)) = damage {
            let at = at % (bytes.len() + 1);
            bytes.splice(at..at, junk);
        }
        if let Some(t) = truncate.filter(|t| t % 4 == 0) {
            bytes.truncate(t % (bytes.len() + 1));
        }
        bytes
    })
}

fn raw_path_key() -> impl Strategy<Value = String> {
    prop_oneof!["([a-zA-Z0-9/._~ -]|%[0-9A-Fa-f]{2}|%[0-9A-Za-z]?|%){0,40}", any::<String>(), "k{4090,4100}"]
}

fn content_type() -> impl Strategy<Value = String> {
    prop_oneof![
        "(application|text|multipart|image|)/(json|octet-stream|plain|x-www-form-urlencoded|vnd\\.x\\+json|form-data|xml|)( ?; ?charset=utf-8| ?; boundary=x)?",
        "[A-Za-z/;= +-]{0,30}",
        any::<String>(),
    ]
}

fn form_body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        "((key|value|db|ttl|k%65y|)(=([a-z +]|%[0-9A-F]{2}|%.?){0,8})?&?){0,4}".prop_map(String::into_bytes),
        prop::collection::vec(any::<u8>(), 0..40),
    ]
}

fn db_source() -> impl Strategy<Value = Option<Vec<u8>>> {
    prop::option::of(prop_oneof![
        "[ -]?[0-9]{0,4} ?".prop_map(String::into_bytes),
        "((ringkv_db|theme|x)=[0-9a-z]{0,4}; ?){0,3}".prop_map(String::into_bytes),
        prop::collection::vec(any::<u8>(), 0..16),
    ])
}

proptest! {
    #![proptest_config(config(1500))]

    #[test]
    fn query_strings_decode_or_are_refused_with_a_4xx(raw in query_string()) {
        oracle::check_query(&raw);
    }

    #[test]
    fn ttls_are_positive_and_at_most_ten_years_or_400(s in ttl_string(), v in json_ttl()) {
        oracle::check_ttl(&s);
        oracle::check_json_ttl(&v);
    }

    #[test]
    fn path_keys_decode_strictly_and_round_trip(raw in raw_path_key()) {
        oracle::check_key_from_path(&raw);
        oracle::check_key(&raw);
    }

    #[test]
    fn content_types_are_classified_or_415(ct in content_type(), body in form_body()) {
        oracle::check_content_type(&ct, &body);
    }

    #[test]
    fn put_bodies_decode_or_are_400(body in json_body(&["value", "ttl", "encoding"])) {
        oracle::check_put_body(&body);
    }

    #[test]
    fn govault_bodies_decode_or_are_400(body in json_body(&["key", "value", "ttl"])) {
        oracle::check_govault_body(&body);
    }

    #[test]
    fn cursors_are_canonical_or_400(s in prop_oneof!["[A-Za-z0-9_+/=-]{0,16}", any::<String>()]) {
        oracle::check_cursor(&s);
    }

    #[test]
    fn form_bodies_decode_or_are_400(key in prop::option::of("[a-z%]{0,6}"), body in form_body()) {
        oracle::check_form(key.as_deref(), &body);
    }

    #[test]
    fn compat_databases_are_0_to_15_or_400(header in db_source(), cookie in db_source()) {
        oracle::check_db_sources(header.as_deref(), cookie.as_deref());
    }

    #[test]
    fn arbitrary_bytes_never_panic_a_request_decoder(data in prop::collection::vec(any::<u8>(), 0..64)) {
        oracle::check_request_bytes(&data);
    }
}

fn record() -> impl Strategy<Value = (u32, u8, Vec<u8>)> {
    let kind = prop_oneof![8 => 1u8..=5, 1 => Just(0u8), 1 => any::<u8>()];
    // Mostly a small log index first, so entries, truncations and purges meet.
    let payload = prop_oneof![
        4 => (0u64..8, prop::collection::vec(any::<u8>(), 0..8)).prop_map(|(i, d)| [&i.to_le_bytes()[..], &d].concat()),
        1 => prop::collection::vec(any::<u8>(), 0..24),
    ];
    (0u32..4, kind, payload)
}

fn mutation() -> impl Strategy<Value = oracle::Mutation> {
    prop_oneof![
        (any::<usize>(), 1u8..).prop_map(|(at, mask)| oracle::Mutation::Flip { at, mask }),
        any::<usize>().prop_map(|at| oracle::Mutation::Truncate { at }),
        (any::<usize>(), prop::collection::vec(any::<u8>(), 1..16))
            .prop_map(|(at, bytes)| oracle::Mutation::Insert { at, bytes }),
    ]
}

proptest! {
    #![proptest_config(config(400))]

    #[test]
    fn wal_replay_matches_the_format_reference_for_damaged_segments(
        records in prop::collection::vec(record(), 0..12),
        mutations in prop::collection::vec(mutation(), 0..3),
        splits in prop::collection::vec(any::<usize>(), 0..3),
    ) {
        oracle::check_wal_records(&records, &mutations, &splits);
    }

    #[test]
    fn wal_replay_of_arbitrary_bytes_never_panics_or_returns_an_unchecked_record(
        data in prop::collection::vec(any::<u8>(), 0..96),
    ) {
        oracle::check_wal_bytes(&data);
    }
}
