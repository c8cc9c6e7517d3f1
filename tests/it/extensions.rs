//! Schema extensions declared per tenant in the configuration, end to end.

use reqwest::Method;
use scimd::config::{AttributeConfig, ExtensionConfig};
use serde_json::{Value, json};

use crate::harness::{ACME, GLOBEX, Srv, assert_error, strings, total};

const EXT: &str = "urn:ietf:params:scim:schemas:extension:acme:2.0:User";
const GEXT: &str = "urn:ietf:params:scim:schemas:extension:acme:2.0:Group";

fn attr(name: &str, ty: &str) -> AttributeConfig {
    AttributeConfig {
        name: name.into(),
        ty: ty.into(),
        multi_valued: false,
        required: false,
        case_exact: false,
        mutability: "readWrite".into(),
        returned: "default".into(),
        uniqueness: "none".into(),
        canonical_values: vec![],
        reference_types: vec![],
        description: format!("{name} of the person"),
        sub_attributes: vec![],
    }
}

async fn srv() -> Srv {
    srv_with(|_| {}).await
}

/// `srv()`'s extensions, then `more` of the test's own.
async fn srv_with(more: impl FnOnce(&mut scimd::config::Config)) -> Srv {
    Srv::start_with(|c| {
        let mut badge = attr("badge", "string");
        badge.uniqueness = "server".into();
        let mut skills = attr("skills", "string");
        skills.multi_valued = true;
        let mut desk = attr("desk", "complex");
        desk.sub_attributes = vec![attr("building", "string"), attr("floor", "integer")];
        // writeOnly, with `returned` left at its default: never returned all the same.
        let mut ssn = attr("ssn", "string");
        ssn.mutability = "writeOnly".into();
        c.tenants.get_mut("acme").unwrap().extensions = vec![
            ExtensionConfig {
                urn: EXT.into(),
                name: "AcmeUser".into(),
                description: "Acme's own fields".into(),
                resource: "User".into(),
                attributes: vec![
                    attr("weight", "decimal"),
                    badge,
                    attr("onboarded", "boolean"),
                    attr("start", "dateTime"),
                    skills,
                    desk,
                    ssn,
                ],
            },
            ExtensionConfig {
                urn: GEXT.into(),
                name: "AcmeGroup".into(),
                description: String::new(),
                resource: "Group".into(),
                attributes: vec![attr("costCode", "string")],
            },
        ];
        more(c);
    })
    .await
}

fn person(name: &str, weight: f64, badge: &str) -> Value {
    json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User", EXT], "userName": name,
        EXT: {"weight": weight, "badge": badge, "onboarded": "True", "start": "2024-03-01T09:00:00Z",
              "skills": ["rust", "scim"], "desk": {"building": "B2", "floor": "3"}}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn declared_extensions_are_discoverable_for_their_tenant_only() {
    let s = srv().await;
    // Without a token, even the tenant's own URL shows only the built-in schemas.
    let r = s
        .call(Method::GET, "/tenants/acme/scim/v2/Schemas", None, None)
        .await;
    assert_eq!(total(&r), 3);
    // Another tenant's token is refused there.
    assert_error(
        &s.call(
            Method::GET,
            "/tenants/acme/scim/v2/Schemas",
            Some(GLOBEX),
            None,
        )
        .await,
        401,
        None,
    );
    let r = s
        .call(
            Method::GET,
            "/tenants/acme/scim/v2/Schemas",
            Some(ACME),
            None,
        )
        .await;
    let ext = r.body["Resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["id"] == EXT)
        .cloned()
        .expect("declared schema listed");
    let badge = ext["attributes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == "badge")
        .unwrap()
        .clone();
    assert_eq!(
        (
            badge["type"].as_str(),
            badge["uniqueness"].as_str(),
            badge["caseExact"].as_bool()
        ),
        (Some("string"), Some("server"), Some(false))
    );
    let desk = ext["attributes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == "desk")
        .unwrap()
        .clone();
    assert_eq!(desk["subAttributes"][1]["type"], "integer");
    let ssn = ext["attributes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == "ssn")
        .unwrap()
        .clone();
    assert_eq!(
        (&ssn["mutability"], &ssn["returned"]),
        (&json!("writeOnly"), &json!("never"))
    );
    assert_eq!(
        s.get(&format!("/Schemas/{EXT}")).await.body["name"],
        "AcmeUser",
        "the token's tenant decides too"
    );
    let rt = s
        .call(
            Method::GET,
            "/tenants/acme/scim/v2/ResourceTypes/User",
            Some(ACME),
            None,
        )
        .await;
    let exts: Vec<&str> = rt.body["schemaExtensions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["schema"].as_str().unwrap())
        .collect();
    assert!(exts.contains(&EXT), "{exts:?}");
    let g = s
        .call(
            Method::GET,
            "/tenants/acme/scim/v2/ResourceTypes/Group",
            Some(ACME),
            None,
        )
        .await;
    assert_eq!(g.body["schemaExtensions"][0]["schema"], GEXT);
    // Other tenants and the anonymous form see only the built-in schemas.
    let r = s
        .call(Method::GET, "/tenants/globex/scim/v2/Schemas", None, None)
        .await;
    assert_eq!(total(&r), 3);
    assert_error(
        &s.call(Method::GET, &format!("/Schemas/{EXT}"), Some(GLOBEX), None)
            .await,
        404,
        None,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extension_values_are_validated_stored_filtered_sorted_and_patched() {
    let s = srv().await;
    let r = s.post("/Users", person("heavy@x", 92.5, "B-1")).await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(
        r.body["schemas"],
        json!(["urn:ietf:params:scim:schemas:core:2.0:User", EXT])
    );
    assert_eq!(
        r.body[EXT],
        json!({"weight": 92.5, "badge": "B-1", "onboarded": true, "start": "2024-03-01T09:00:00Z",
        "skills": ["rust", "scim"], "desk": {"building": "B2", "floor": 3}})
    );
    let heavy = r.id();
    assert_eq!(
        s.post("/Users", person("light@x", 61.0, "B-2"))
            .await
            .status,
        201
    );
    // Wrong types are 400 invalidValue naming the attribute; nothing is stored.
    for (field, bad) in [
        ("weight", json!("heavy")),
        ("onboarded", json!("maybe")),
        ("start", json!("yesterday")),
        ("desk", json!({"floor": "third"})),
        ("desk", json!({"floor": 3.5})),
        // Past 2^53 a float may not be the integer written, and an integer written
        // exactly is read as its neighbour by doubles (I-JSON's range).
        ("desk", json!({"floor": 12345678901234567.0})),
        ("desk", json!({"floor": 9007199254740993u64})),
        ("desk", json!({"floor": -9007199254740993i64})),
        ("desk", json!({"floor": "9007199254740993"})),
        ("desk", json!({"floor": "4.5"})),
    ] {
        let mut body = person("bad@x", 1.0, "B-9");
        body[EXT][field] = bad;
        let r = s.post("/Users", body).await;
        assert_error(&r, 400, Some("invalidValue"));
        assert!(
            r.body["detail"].as_str().unwrap().contains(field),
            "{}",
            r.body
        );
    }
    // uniqueness: server, case-insensitively.
    let r = s.post("/Users", person("dup@x", 70.0, "b-1")).await;
    assert_error(&r, 409, Some("uniqueness"));
    assert!(r.body["detail"].as_str().unwrap().contains(&heavy));
    assert_eq!(total(&s.get("/Users").await), 2);
    // Filter and sort on them.
    let r = s.get(&format!("/Users?filter={EXT}:weight gt 70")).await;
    assert_eq!(
        (total(&r), r.body["Resources"][0]["userName"].as_str()),
        (1, Some("heavy@x"))
    );
    let r = s
        .get(&format!(
            "/Users?filter={EXT}:desk.floor eq 3 and {EXT}:onboarded eq true"
        ))
        .await;
    assert_eq!(total(&r), 2);
    // A number compared with a boolean or a word matches nothing, whatever was meant:
    // refused. A number in quotes is that number.
    for value in ["true", "%22third%22", "%22NaN%22", "%22inf%22"] {
        let r = s
            .get(&format!("/Users?filter={EXT}:desk.floor eq {value}"))
            .await;
        assert_error(&r, 400, Some("invalidFilter"));
    }
    // Nor do co, sw and ew, which are for text, even given a number in quotes.
    for op in ["co", "sw", "ew"] {
        let r = s
            .get(&format!("/Users?filter={EXT}:desk.floor {op} %223%22"))
            .await;
        assert_error(&r, 400, Some("invalidFilter"));
    }
    for quoted in ["%223%22", "%22%203%22"] {
        let r = s
            .get(&format!("/Users?filter={EXT}:desk.floor eq {quoted}"))
            .await;
        assert_eq!(total(&r), 2, "{quoted}");
    }
    // Whole numbers compare exactly: 2^53 is not 2^53 + 1, as doubles would have it.
    let mut body = person("top@x", 51.0, "B-8");
    body[EXT]["desk"]["floor"] = json!(9007199254740992u64);
    let top = s.post("/Users", body).await;
    assert_eq!(top.status, 201, "{}", top.body);
    for (op, value, want) in [
        ("eq", "9007199254740993", 0),
        ("eq", "%229007199254740993%22", 0),
        ("eq", "9007199254740992", 1),
        ("lt", "9007199254740993", 3),
        ("gt", "9007199254740991", 1),
    ] {
        let r = s
            .get(&format!("/Users?filter={EXT}:desk.floor {op} {value}"))
            .await;
        assert_eq!(total(&r), want, "floor {op} {value}: {}", r.body);
    }
    s.delete(&format!("/Users/{}", top.id())).await;
    // A whole number written as a float (JSON libraries holding doubles) is that integer.
    let mut body = person("float@x", 50.0, "B-7");
    body[EXT]["desk"]["floor"] = json!(4.0);
    let r = s.post("/Users", body).await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.body[EXT]["desk"]["floor"], json!(4));
    s.delete(&format!("/Users/{}", r.id())).await;
    // A date and time without a zone is an xsd:dateTime (RFC 7643 §2.3.5): kept as sent,
    // compared as UTC; a date alone is not one.
    let mut body = person("local@x", 52.0, "B-6");
    body[EXT]["start"] = json!("2024-03-01T10:00:00");
    let r = s.post("/Users", body.clone()).await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.body[EXT]["start"], "2024-03-01T10:00:00");
    // co, sw and ew read a date as the text written, a whole date-time included.
    for (op, value, want) in [
        ("gt", "2024-03-01T09:30:00Z", 1),
        ("eq", "2024-03-01T11:00:00%2B01:00", 1),
        ("lt", "2024-03-01T10:00:00", 2),
        ("sw", "2024-03-01T10:00:00", 1),
        ("sw", "2024-03-01T09:00:00Z", 2),
        ("ew", "T10:00:00", 1),
        ("co", "03-01", 3),
    ] {
        let r = s
            .get(&format!("/Users?filter={EXT}:start {op} %22{value}%22"))
            .await;
        assert_eq!(total(&r), want, "start {op} {value}: {}", r.body);
    }
    let r = s
        .get(&format!("/Users?sortBy={EXT}:start&sortOrder=descending"))
        .await;
    assert_eq!(r.body["Resources"][0]["userName"], "local@x");
    body[EXT]["start"] = json!("2024-03-01");
    body["userName"] = json!("dateonly@x");
    assert_error(&s.post("/Users", body).await, 400, Some("invalidValue"));
    s.delete(&format!(
        "/Users/{}",
        r.body["Resources"][0]["id"].as_str().unwrap()
    ))
    .await;
    let r = s.get(&format!("/Users?sortBy={EXT}:weight")).await;
    let order: Vec<&str> = r.body["Resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["userName"].as_str().unwrap())
        .collect();
    assert_eq!(order, ["light@x", "heavy@x"]);
    // A multi-valued simple attribute sorts by its first value.
    let light = r.body["Resources"][0]["id"].as_str().unwrap().to_string();
    let r = s
        .patch(
            &format!("/Users/{light}"),
            json!([{"op": "replace", "path": format!("{EXT}:skills"), "value": ["zeta"]}]),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    for (order, want) in [
        ("ascending", ["heavy@x", "light@x"]),
        ("descending", ["light@x", "heavy@x"]),
    ] {
        let r = s
            .get(&format!("/Users?sortBy={EXT}:skills&sortOrder={order}"))
            .await;
        let got: Vec<&str> = r.body["Resources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|u| u["userName"].as_str().unwrap())
            .collect();
        assert_eq!(got, want, "{order}");
    }
    // PATCH by URN-qualified path.
    let r = s
        .patch(
            &format!("/Users/{heavy}"),
            json!([{"op": "replace", "path": format!("{EXT}:weight"), "value": 88},
        {"op": "add", "path": format!("{EXT}:skills"), "value": ["go"]},
        {"op": "replace", "path": format!("{EXT}:desk.floor"), "value": 4}]),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        (
            r.body[EXT]["weight"].as_f64(),
            r.body[EXT]["desk"]["floor"].as_i64()
        ),
        (Some(88.0), Some(4))
    );
    assert_eq!(r.body[EXT]["skills"], json!(["rust", "scim", "go"]));
    let r = s
        .patch(
            &format!("/Users/{heavy}"),
            json!([{"op": "replace", "path": format!("{EXT}:weight"), "value": "lots"}]),
        )
        .await;
    assert_error(&r, 400, Some("invalidValue"));
    // Projection by URN.
    let r = s
        .get(&format!("/Users/{heavy}?attributes={EXT}:badge"))
        .await;
    assert_eq!(r.body[EXT], json!({"badge": "B-1"}));
    // Group extension.
    let r = s
        .post(
            "/Groups",
            json!({"displayName": "Finance", GEXT: {"costCode": "F-100"}}),
        )
        .await;
    assert_eq!(r.body[GEXT]["costCode"], "F-100");
    // Another tenant's writes of these attributes are unknown to it: ignored.
    let r = s
        .call(
            Method::POST,
            "/Users",
            Some(GLOBEX),
            Some(person("other@x", 1.0, "B-1")),
        )
        .await;
    assert_eq!(r.status, 201);
    assert!(r.body.get(EXT).is_none());
}

/// RFC 7643 §7: an extension attribute declared `returned = "never"` is stored but never
/// returned; one declared `"request"` only when `attributes` names it, or in the answer to
/// the write that set it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn never_and_request_attributes_stay_out_of_answers_unless_asked() {
    let s = Srv::start_with(|c| {
        let mut pin = attr("pin", "string");
        pin.returned = "never".into();
        let mut note = attr("note", "string");
        note.returned = "request".into();
        let mut number = attr("number", "string");
        number.returned = "never".into();
        let mut expiry = attr("expiry", "string");
        expiry.returned = "request".into();
        let mut card = attr("card", "complex");
        card.sub_attributes = vec![number, expiry, attr("label", "string")];
        let mut value = attr("value", "string");
        value.returned = "never".into();
        let mut secret = attr("secret", "complex");
        secret.sub_attributes = vec![value];
        let mut extra = attr("extra", "complex");
        extra.returned = "request".into();
        extra.sub_attributes = vec![attr("bio", "string"), attr("motto", "string")];
        c.tenants.get_mut("acme").unwrap().extensions = vec![ExtensionConfig {
            urn: EXT.into(),
            name: "AcmeUser".into(),
            description: String::new(),
            resource: "User".into(),
            attributes: vec![pin, note, attr("badge", "string"), card, secret, extra],
        }];
    })
    .await;
    let r = s
        .post(
            "/Users",
            json!({"userName": "hid@x", "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User", EXT],
                EXT: {"pin": "1234", "note": "n", "badge": "b", "extra": {"bio": "hi", "motto": "m"},
                    "card": {"number": "4111", "expiry": "12/30", "label": "work"}}}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let id = r.body["id"].as_str().unwrap().to_string();
    let shown = |v: &Value| {
        (
            v[EXT].get("pin").cloned(),
            v[EXT].get("note").cloned(),
            v[EXT]["badge"].clone(),
        )
    };
    // The answer to the write that set them shows `request` attributes (RFC 7643 §7: "if
    // the attribute was specified by the client"), never the `never` ones.
    assert_eq!(shown(&r.body), (None, Some(json!("n")), json!("b")));
    assert_eq!(
        r.body[EXT]["card"],
        json!({"expiry": "12/30", "label": "work"})
    );
    let patched = s
        .patch(
            &format!("/Users/{id}"),
            json!([{"op": "replace", "path": format!("{EXT}:note"), "value": "n2"}]),
        )
        .await;
    assert_eq!(shown(&patched.body), (None, Some(json!("n2")), json!("b")));
    let patched = s
        .patch(
            &format!("/Users/{id}"),
            json!([{"op": "replace", "path": format!("{EXT}:note"), "value": "n"},
                {"op": "replace", "path": format!("{EXT}:badge"), "value": "b2"}]),
        )
        .await;
    assert_eq!(shown(&patched.body), (None, Some(json!("n")), json!("b2")));
    let patched = s
        .patch(
            &format!("/Users/{id}"),
            json!([{"op": "replace", "value": {format!("{EXT}:badge"): "b"}}]),
        )
        .await;
    assert_eq!(shown(&patched.body), (None, None, json!("b")));
    let got = s.get(&format!("/Users/{id}")).await;
    assert_eq!(shown(&got.body), (None, None, json!("b")));
    assert_eq!(got.body[EXT]["card"], json!({"label": "work"}));
    let found = s.get("/Users?filter=userName%20eq%20%22hid@x%22").await;
    assert_eq!(total(&found), 1);
    assert_eq!(shown(&found.body["Resources"][0]), (None, None, json!("b")));
    let asked = s
        .get(&format!("/Users/{id}?attributes={EXT}:note,{EXT}:pin"))
        .await;
    assert_eq!(asked.body[EXT].get("note"), Some(&json!("n")));
    assert!(asked.body[EXT].get("pin").is_none());
    let card = s
        .get(&format!("/Users/{id}?attributes={EXT}:card.expiry"))
        .await;
    assert_eq!(card.body[EXT]["card"], json!({"expiry": "12/30"}));
    // Naming the parent asks for its request sub-attributes; naming a sub-attribute of a
    // request attribute asks for that attribute.
    let card = s.get(&format!("/Users/{id}?attributes={EXT}:card")).await;
    assert_eq!(
        card.body[EXT]["card"],
        json!({"expiry": "12/30", "label": "work"})
    );
    assert!(got.body[EXT].get("extra").is_none());
    let extra = s
        .get(&format!("/Users/{id}?attributes={EXT}:extra.bio"))
        .await;
    assert_eq!(extra.body[EXT]["extra"], json!({"bio": "hi"}));
    let whole = s.get(&format!("/Users/{id}?attributes={EXT}")).await;
    assert_eq!(whole.body[EXT].get("note"), Some(&json!("n")));
    assert!(whole.body[EXT].get("pin").is_none());
    // Nor can a client probe a never-returned value by filtering or sorting on it.
    for q in [
        format!("filter={EXT}:pin%20eq%20%221234%22"),
        format!("filter={EXT}:card.number%20sw%20%224%22"),
        // A complex attribute named alone is compared by its (never returned) value.
        format!("filter={EXT}:secret%20sw%20%22h%22"),
        "filter=password%20pr".to_string(),
        format!("filter=userName%20pr&sortBy={EXT}:pin"),
    ] {
        let r = s.get(&format!("/Users?{q}")).await;
        assert_eq!(r.status, 400, "{q}: {}", r.body);
        assert!(
            r.body["detail"]
                .as_str()
                .unwrap()
                .contains("never returned"),
            "{}",
            r.body
        );
    }
    // The request-only attribute stays filterable.
    assert_eq!(
        total(
            &s.get(&format!("/Users?filter={EXT}:note%20eq%20%22n%22"))
                .await
        ),
        1
    );
    // A user holding only never-returned values of the extension, whose answers do not list
    // it, is not found by `schemas eq` either: that would tell who has such a value.
    let r = s
        .post(
            "/Users",
            json!({"userName": "pin-only@x", EXT: {"pin": "9", "card": {"number": "4"}}}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(
        r.body["schemas"],
        json!(["urn:ietf:params:scim:schemas:core:2.0:User"])
    );
    // One holding only a `request` value is found: asked for, its answers list it.
    let r = s
        .post(
            "/Users",
            json!({"userName": "note-only@x", EXT: {"note": "x"}}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let listed = s
        .get(&format!(
            "/Users?filter=schemas%20eq%20%22{EXT}%22&attributes=userName"
        ))
        .await;
    let names = crate::harness::strings(&listed.body["Resources"], "userName");
    assert_eq!(names, ["hid@x", "note-only@x"], "{}", listed.body);
}

/// RFC 7643 §7, RFC 7644 §3.4.2.5: a sub-attribute declared `returned = "always"` comes
/// back in every value whatever `attributes` or `excludedAttributes` say, in any order; a
/// value filter chooses which values come back whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn always_sub_attributes_survive_every_projection() {
    let s = Srv::start_with(|c| {
        let (mut kid, mut secret, mut id) = (
            attr("kid", "string"),
            attr("secret", "string"),
            attr("id", "string"),
        );
        kid.returned = "always".into();
        secret.returned = "never".into();
        id.returned = "always".into();
        let mut keys = attr("keys", "complex");
        keys.multi_valued = true;
        keys.sub_attributes = vec![kid, attr("label", "string"), secret];
        let mut profile = attr("profile", "complex");
        profile.sub_attributes = vec![id, attr("bio", "string")];
        c.tenants.get_mut("acme").unwrap().extensions = vec![ExtensionConfig {
            urn: EXT.into(),
            name: "AcmeUser".into(),
            description: String::new(),
            resource: "User".into(),
            attributes: vec![keys, profile, attr("badge", "string")],
        }];
    })
    .await;
    let r = s
        .post(
            "/Users",
            json!({"userName": "keys@x", EXT: {"badge": "b",
                "keys": [{"kid": "k1", "label": "L1", "secret": "s1"},
                    {"kid": "k2", "label": "L2", "secret": "s2"}, {"label": "L3"},
                    {"kid": "k4", "label": "L1"}],
                "profile": {"id": "p1", "bio": "hello"}}}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let id = r.body["id"].as_str().unwrap().to_string();
    let kids = json!([{"kid": "k1"}, {"kid": "k2"}, {"kid": "k4"}]);
    for (q, keys, profile) in [
        (
            "attributes=userName".to_string(),
            kids.clone(),
            json!({"id": "p1"}),
        ),
        (
            format!("excludedAttributes={EXT}"),
            kids.clone(),
            json!({"id": "p1"}),
        ),
        (
            format!("excludedAttributes={EXT}:keys,{EXT}:profile.id,{EXT}:keys.kid"),
            kids.clone(),
            json!({"id": "p1", "bio": "hello"}),
        ),
        (
            format!("attributes={EXT}:keys.label,{EXT}:profile.bio"),
            json!([{"kid": "k1", "label": "L1"}, {"kid": "k2", "label": "L2"}, {"label": "L3"},
                {"kid": "k4", "label": "L1"}]),
            json!({"id": "p1", "bio": "hello"}),
        ),
        // A value filter chooses which values come back whole; the others keep their
        // `always` sub-attribute, each its own.
        (
            format!("attributes={EXT}:keys[label eq \"L2\"]"),
            json!([{"kid": "k1"}, {"kid": "k2", "label": "L2"}, {"kid": "k4"}]),
            json!({"id": "p1"}),
        ),
        (
            format!("attributes={EXT}:keys[kid eq \"k4\"].label"),
            json!([{"kid": "k1"}, {"kid": "k2"}, {"kid": "k4", "label": "L1"}]),
            json!({"id": "p1"}),
        ),
        (
            format!("attributes={EXT}:keys[label eq \"L1\"].label"),
            json!([{"kid": "k1", "label": "L1"}, {"kid": "k2"}, {"kid": "k4", "label": "L1"}]),
            json!({"id": "p1"}),
        ),
        (
            format!("attributes={EXT}:keys[label eq \"none\"]"),
            kids.clone(),
            json!({"id": "p1"}),
        ),
        (
            format!("excludedAttributes={EXT}:keys[label eq \"L1\"]"),
            json!([{"kid": "k1"}, {"kid": "k2", "label": "L2"}, {"label": "L3"}, {"kid": "k4"}]),
            json!({"id": "p1", "bio": "hello"}),
        ),
        // In any order, with the attribute or the extension excluded too.
        (
            format!("excludedAttributes={EXT}:keys[label eq \"L1\"],{EXT}:keys"),
            kids.clone(),
            json!({"id": "p1", "bio": "hello"}),
        ),
        (
            format!("excludedAttributes={EXT}:keys,{EXT}:keys[label eq \"L1\"]"),
            kids.clone(),
            json!({"id": "p1", "bio": "hello"}),
        ),
        (
            format!("excludedAttributes={EXT}:keys[label eq \"L1\"],{EXT}"),
            kids.clone(),
            json!({"id": "p1"}),
        ),
    ] {
        let got = s.get(&format!("/Users/{id}?{q}")).await;
        assert_eq!(got.status, 200, "{q}: {}", got.body);
        assert_eq!(
            (&got.body[EXT]["keys"], &got.body[EXT]["profile"]),
            (&keys, &profile),
            "{q}"
        );
        assert!(!got.body.to_string().contains("\"s1\""), "{q}");
    }
}

/// The characteristics a tenant declares hold on every write and read: `immutable` is set
/// once (RFC 7643 §2.2), `always` survives `attributes` and `excludedAttributes` (RFC 7644
/// §3.9), a `required` attribute added later does not lock out the users stored before
/// it, and values of an extension taken out of the configuration are no longer shown.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn immutable_always_late_required_and_removed_extensions() {
    let mut key = attr("employeeKey", "string");
    key.mutability = "immutable".into();
    let mut tag = attr("tag", "string");
    tag.returned = "always".into();
    let mut pin = attr("pin", "string");
    pin.returned = "never".into();
    let mut badges = attr("badges", "string");
    badges.mutability = "immutable".into();
    badges.multi_valued = true;
    let ext = |attributes| ExtensionConfig {
        urn: EXT.into(),
        name: "AcmeUser".into(),
        description: String::new(),
        resource: "User".into(),
        attributes,
    };
    let declared = vec![key, tag, pin, badges, attr("costCenter", "string")];
    let s = Srv::start_with(|c| {
        c.tenants.get_mut("acme").unwrap().extensions = vec![ext(declared.clone())];
    })
    .await;
    let schemas = json!(["urn:ietf:params:scim:schemas:core:2.0:User", EXT]);
    let r = s
        .post(
            "/Users",
            json!({"schemas": schemas, "userName": "im@x", "active": true,
                EXT: {"employeeKey": "EK1", "tag": "t1", "pin": "pin-secret", "badges": ["b1", "b2"]}}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let id = r.body["id"].as_str().unwrap().to_string();
    let path = format!("/Users/{id}");
    let patch = |op: &str, p: &str, v: Value| json!([{"op": op, "path": p, "value": v}]);

    // Immutable: a new value or a removal is refused; the same value, or a PUT leaving it
    // out, keeps it.
    let k = format!("{EXT}:employeeKey");
    assert_error(
        &s.patch(&path, patch("replace", &k, json!("EK2"))).await,
        400,
        Some("mutability"),
    );
    assert_error(
        &s.patch(&path, patch("remove", &k, Value::Null)).await,
        400,
        Some("mutability"),
    );
    let r = s
        .put(
            &path,
            json!({"schemas": schemas, "userName": "im@x", EXT: {"employeeKey": "EK3"}}),
        )
        .await;
    assert_error(&r, 400, Some("mutability"));
    let r = s
        .put(
            &path,
            json!({"schemas": schemas, "userName": "im@x", EXT: {"employeeKey": "EK1", "tag": "t2"}}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    // A multi-valued one has no order to keep: the same values reordered are the same
    // value; one more, one fewer or another is a change.
    let badges = |v: Value| json!({"schemas": schemas, "userName": "im@x", EXT: {"employeeKey": "EK1", "tag": "t2", "badges": v}});
    let r = s.put(&path, badges(json!(["b2", "b1"]))).await;
    assert_eq!(r.status, 200, "{}", r.body);
    for changed in [
        json!(["b1", "b2", "b3"]),
        json!(["b1"]),
        json!(["b1", "b1"]),
    ] {
        let r = s.put(&path, badges(changed.clone())).await;
        assert_error(&r, 400, Some("mutability"));
    }
    let r = s
        .put(
            &path,
            json!({"schemas": schemas, "userName": "im@x", EXT: {"tag": "t2"}}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body[EXT]["employeeKey"], "EK1");
    // Unset, it may be set once.
    let other = s.user("other@x").await;
    let r = s
        .patch(&format!("/Users/{other}"), patch("add", &k, json!("EK9")))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body[EXT]["employeeKey"], "EK9");

    // Always returned, whatever the projection.
    for q in [
        "attributes=userName".to_string(),
        format!("excludedAttributes={EXT}:tag"),
        format!("excludedAttributes={EXT}"),
    ] {
        let r = s.get(&format!("{path}?{q}")).await;
        assert_eq!(r.body[EXT]["tag"], "t2", "{q}: {}", r.body);
        assert!(
            r.body["schemas"].as_array().unwrap().contains(&json!(EXT)),
            "{q}: {}",
            r.body
        );
    }
    let r = s
        .get("/Users?attributes=userName&filter=userName%20eq%20%22im@x%22")
        .await;
    assert_eq!(r.body["Resources"][0][EXT]["tag"], "t2", "{}", r.body);

    // Required later: the users stored before can still be deactivated and changed, but
    // not created without it, nor have it taken away once given.
    let mut cfg = s.config.clone();
    let mut now_required = declared.clone();
    for a in now_required.iter_mut().filter(|a| a.name == "costCenter") {
        a.required = true;
    }
    cfg.tenants.get_mut("acme").unwrap().extensions = vec![ext(now_required)];
    let required = |body: &Value| {
        body["schemaExtensions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["schema"] == EXT)
            .map(|e| e["required"].clone())
    };
    let rt = s.get("/ResourceTypes/User").await;
    assert_eq!(required(&rt.body), Some(json!(false)), "{}", rt.body);
    s.reloader().apply(cfg).await.unwrap();
    // RFC 7643 §6: a User must now carry the extension, and discovery says so.
    let rt = s.get("/ResourceTypes/User").await;
    assert_eq!(required(&rt.body), Some(json!(true)), "{}", rt.body);
    let r = s
        .patch(&path, patch("replace", "active", json!(false)))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["active"], false);
    let r = s
        .put(
            &path,
            json!({"schemas": schemas, "userName": "anon-1", "active": false}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_error(
        &s.post("/Users", json!({"userName": "new@x"})).await,
        400,
        Some("invalidValue"),
    );
    let cc = format!("{EXT}:costCenter");
    let r = s.patch(&path, patch("add", &cc, json!("CC1"))).await;
    assert_eq!(r.status, 200, "{}", r.body);
    // Taking a required value away is a mutability error (RFC 7644 §3.5.2.2), as for
    // userName, by a remove or a replace with null.
    for op in ["remove", "replace"] {
        assert_error(
            &s.patch(&path, patch(op, &cc, Value::Null)).await,
            400,
            Some("mutability"),
        );
    }

    // An attribute taken out of a kept extension: its value stays unshown, a `never` one
    // included (it would otherwise become an attribute with no `returned` rule).
    let mut cfg = s.config.clone();
    let without_pin: Vec<AttributeConfig> = declared
        .iter()
        .filter(|a| a.name != "pin")
        .cloned()
        .collect();
    cfg.tenants.get_mut("acme").unwrap().extensions = vec![ext(without_pin)];
    s.reloader().apply(cfg).await.unwrap();
    for r in [
        s.get(&path).await,
        s.get(&format!("{path}?attributes={EXT}")).await,
        s.get("/Users?filter=userName%20eq%20%22anon-1%22").await,
        s.patch(&path, patch("replace", "title", json!("x"))).await,
    ] {
        let text = r.body.to_string();
        assert_eq!(r.status, 200, "{text}");
        assert!(!text.contains("pin-secret"), "{text}");
        assert!(
            text.contains("EK1"),
            "the rest of the extension is shown: {text}"
        );
    }

    // Taken out of the configuration: its values, `never` ones included, are not shown.
    let mut cfg = s.config.clone();
    cfg.tenants.get_mut("acme").unwrap().extensions = Vec::new();
    s.reloader().apply(cfg).await.unwrap();
    for r in [
        s.get(&path).await,
        s.get(&format!("{path}?attributes=userName")).await,
        s.get("/Users?filter=userName%20eq%20%22anon-1%22").await,
    ] {
        let text = r.body.to_string();
        assert_eq!(r.status, 200, "{text}");
        assert!(
            !text.contains(EXT) && !text.contains("pin-secret"),
            "{text}"
        );
    }
}

/// A tenant's URN may begin with a built-in one and a colon: its attributes are its own, in
/// writes as in filters (the first URN that matched was taken, so its values were dropped).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_extension_urn_that_extends_the_enterprise_urn_holds_its_values() {
    const ENT: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
    let urn = format!("{ENT}:acme");
    let declared = urn.clone();
    let s = Srv::start_with(move |c| {
        c.tenants.get_mut("acme").unwrap().extensions = vec![ExtensionConfig {
            urn: declared,
            name: "AcmeLevel".into(),
            description: String::new(),
            resource: "User".into(),
            attributes: vec![attr("level", "string")],
        }];
    })
    .await;
    let r = s
        .post(
            "/Users",
            json!({"userName": "lvl@x", urn.as_str(): {"level": "7"}, ENT: {"department": "R&D"}}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.body[urn.as_str()]["level"], "7", "{}", r.body);
    assert_eq!(r.body[ENT]["department"], "R&D", "{}", r.body);
    let id = r.body["id"].as_str().unwrap().to_string();
    let r = s
        .patch(
            &format!("/Users/{id}"),
            json!([{"op": "replace", "path": format!("{urn}:level"), "value": "8"}]),
        )
        .await;
    assert_eq!(r.body[urn.as_str()]["level"], "8", "{}", r.body);
    let filter = format!("{urn}:level eq \"8\"")
        .replace(' ', "%20")
        .replace('"', "%22");
    let r = s.get(&format!("/Users?filter={filter}")).await;
    assert_eq!(total(&r), 1, "{}", r.body);
}

/// `scimd verify`, asked of the running daemon, finds no mismatch.
/// A create-only value is ignored in a change, even when what was sent is another user's
/// unique value: that is not a reason to refuse the rest of the change (here a deactivation,
/// which an IdP that sends its whole mapping would otherwise never get through).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_create_only_unique_value_does_not_refuse_the_rest_of_a_change() {
    let s = srv_with(|c| {
        c.tenants.get_mut("acme").unwrap().create_only = vec![format!("{EXT}:badge")];
    })
    .await;
    let holder = s.post("/Users", person("co-c@x", 60.0, "K1")).await;
    assert_eq!(holder.status, 201);
    let r = s.post("/Users", person("co-d@x", 61.0, "K2")).await;
    assert_eq!(r.status, 201);
    let p = format!("/Users/{}", r.id());
    let mut whole = person("co-d@x", 61.0, "K1");
    whole["active"] = json!(false);
    let r = s.put(&p, whole).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        (r.body["active"].as_bool(), r.body[EXT]["badge"].as_str()),
        (Some(false), Some("K2"))
    );
    let r = s
        .patch(
            &p,
            json!([{"op": "replace", "path": format!("{EXT}:badge"), "value": "K1"},
                {"op": "replace", "path": "active", "value": true}]),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        (r.body["active"].as_bool(), r.body[EXT]["badge"].as_str()),
        (Some(true), Some("K2"))
    );
    // The value stays its holder's alone.
    let r = s
        .get(&format!("/Users?filter={EXT}:badge%20eq%20%22K1%22"))
        .await;
    assert_eq!(total(&r), 1);
    assert_eq!(r.body["Resources"][0]["id"], holder.body["id"]);
    // Where the attribute is not create-only, the same PUT is still refused.
    let plain = srv().await;
    plain.post("/Users", person("co-c@x", 60.0, "K1")).await;
    let id = plain
        .post("/Users", person("co-d@x", 61.0, "K2"))
        .await
        .id();
    let r = plain
        .put(&format!("/Users/{id}"), person("co-d@x", 61.0, "K1"))
        .await;
    assert_error(&r, 409, Some("uniqueness"));
    verify_clean(&s).await;
}

async fn verify_clean(s: &Srv) {
    let socket = scimd::admin::socket_path(&s.config);
    let answer = scimd::admin::ask(&socket, &json!({"cmd": "verify"}))
        .await
        .expect("the daemon answers");
    assert_eq!(answer["ok"], true, "{answer}");
}

/// The server's configuration with acme's extensions replaced by `exts`, for a reload.
fn declaring(s: &Srv, exts: Vec<ExtensionConfig>) -> scimd::config::Config {
    let mut cfg = s.config.clone();
    cfg.tenants.get_mut("acme").unwrap().extensions = exts;
    cfg
}

/// A unique value a resource stops holding frees it, even when the write or deletion came
/// while its extension was out of the configuration or its attribute not unique: the
/// entries made before are taken out, or the value would stay taken, by a 409 naming a
/// user that no longer holds it (or no longer exists).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_unique_value_is_freed_by_writes_made_while_it_was_not_declared_unique() {
    let s = srv().await;
    let id = |r: &crate::harness::Res| r.body["id"].as_str().unwrap().to_string();
    let a = id(&s.post("/Users", person("a@x", 1.0, "B-1")).await);
    let b = id(&s.post("/Users", person("b@x", 1.0, "B-2")).await);
    let declared = s.config.tenants["acme"].extensions.clone();
    let declare = |exts| declaring(&s, exts);
    s.reloader().apply(declare(Vec::new())).await.unwrap();
    // The entries kept for the extension taken out are no mismatch while their users
    // hold the values.
    verify_clean(&s).await;
    let r = s
        .put(&format!("/Users/{a}"), json!({"userName": "a@x"}))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(s.delete(&format!("/Users/{b}")).await.status, 204);
    s.reloader().apply(declare(declared.clone())).await.unwrap();
    // Both values are free, and held by their new holders.
    let c = s.post("/Users", person("c@x", 1.0, "b-1")).await;
    assert_eq!(c.status, 201, "{}", c.body);
    let d = s.post("/Users", person("d@x", 1.0, "B-2")).await;
    assert_eq!(d.status, 201, "{}", d.body);
    let r = s.post("/Users", person("e@x", 1.0, "B-1")).await;
    assert_error(&r, 409, Some("uniqueness"));
    assert!(
        r.body["detail"].as_str().unwrap().contains(&id(&c)),
        "{}",
        r.body
    );
    verify_clean(&s).await;
    // The same while the attribute is declared but not unique: c's change frees B-1.
    let mut not_unique = declared.clone();
    for a in not_unique[0].attributes.iter_mut() {
        a.uniqueness = "none".into();
    }
    s.reloader().apply(declare(not_unique)).await.unwrap();
    let path = format!("/Users/{}", id(&c));
    let r = s
        .patch(
            &path,
            json!([{"op": "replace", "path": format!("{EXT}:badge"), "value": "B-9"}]),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    s.reloader().apply(declare(declared)).await.unwrap();
    let r = s.post("/Users", person("f@x", 1.0, "B-1")).await;
    assert_eq!(r.status, 201, "{}", r.body);
}

/// A unique value a resource keeps stays held: through writes while its extension is out
/// of the configuration or its attribute not unique, and once unique again the next write
/// of a value changed meanwhile holds it. A value two resources were given while it was not
/// unique refuses neither's other changes, and refuses a third.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_unique_value_kept_through_writes_while_not_declared_unique_stays_held() {
    let s = srv().await;
    let id = |r: &crate::harness::Res| r.body["id"].as_str().unwrap().to_string();
    let a = id(&s.post("/Users", person("a@x", 1.0, "B-1")).await);
    let declared = s.config.tenants["acme"].extensions.clone();
    let declare = |exts| declaring(&s, exts);
    let mut not_unique = declared.clone();
    for x in not_unique[0].attributes.iter_mut() {
        x.uniqueness = "none".into();
    }
    let path = format!("/Users/{a}");
    let set = |p: &str, v: Value| json!([{"op": "replace", "path": p, "value": v}]);
    let refused_for = |r: &crate::harness::Res, holder: &str| {
        assert_error(r, 409, Some("uniqueness"));
        assert!(
            r.body["detail"].as_str().unwrap().contains(holder),
            "{}",
            r.body
        );
    };
    // A deactivation while the extension is out keeps B-1 held.
    s.reloader().apply(declare(Vec::new())).await.unwrap();
    let r = s.patch(&path, set("active", json!(false))).await;
    assert_eq!(r.status, 200, "{}", r.body);
    s.reloader().apply(declare(declared.clone())).await.unwrap();
    assert_eq!(s.get(&path).await.body[EXT]["badge"], "B-1");
    refused_for(&s.post("/Users", person("b@x", 1.0, "b-1")).await, &a);
    verify_clean(&s).await;
    // So does another change while the attribute is not unique (its entry is no
    // mismatch then either).
    s.reloader()
        .apply(declare(not_unique.clone()))
        .await
        .unwrap();
    verify_clean(&s).await;
    let r = s.patch(&path, set("displayName", json!("A"))).await;
    assert_eq!(r.status, 200, "{}", r.body);
    s.reloader().apply(declare(declared.clone())).await.unwrap();
    refused_for(&s.post("/Users", person("b@x", 1.0, "B-1")).await, &a);
    // A value changed meanwhile, given to a second user too, is held by the next write of
    // the first; the second's other changes are still accepted.
    s.reloader().apply(declare(not_unique)).await.unwrap();
    let r = s
        .patch(&path, set(&format!("{EXT}:badge"), json!("B-9")))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let c = id(&s.post("/Users", person("c@x", 1.0, "B-9")).await);
    s.reloader().apply(declare(declared)).await.unwrap();
    let r = s.patch(&path, set("displayName", json!("A2"))).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = s
        .patch(&format!("/Users/{c}"), set("active", json!(false)))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    refused_for(&s.post("/Users", person("d@x", 1.0, "B-9")).await, &a);
    // The copy changed or deleted leaves the value with its holder.
    let r = s
        .patch(
            &format!("/Users/{c}"),
            set(&format!("{EXT}:badge"), json!("B-10")),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    refused_for(&s.post("/Users", person("d@x", 1.0, "B-9")).await, &a);
    assert_eq!(s.delete(&format!("/Users/{c}")).await.status, 204);
    refused_for(&s.post("/Users", person("d@x", 1.0, "B-9")).await, &a);
    verify_clean(&s).await;
    assert!(s.post("/Users", person("d@x", 1.0, "B-1")).await.status == 201);
}

/// An attribute made `case_exact`: the entry made before for the value lowercased refuses
/// no one (the holder's value is written otherwise), and the holder's next write holds its
/// value as written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_unique_attribute_made_case_exact_refuses_only_the_value_as_written() {
    let s = srv().await;
    let a = s.post("/Users", person("a@x", 1.0, "ABC")).await;
    let a = a.body["id"].as_str().unwrap().to_string();
    let mut exact = s.config.tenants["acme"].extensions.clone();
    for x in exact[0].attributes.iter_mut().filter(|x| x.name == "badge") {
        x.case_exact = true;
    }
    s.reloader().apply(declaring(&s, exact)).await.unwrap();
    let r = s
        .patch(
            &format!("/Users/{a}"),
            json!([{"op": "replace", "path": "displayName", "value": "A"}]),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = s.post("/Users", person("b@x", 1.0, "abc")).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let r = s.post("/Users", person("c@x", 1.0, "ABC")).await;
    assert_error(&r, 409, Some("uniqueness"));
    assert!(
        r.body["detail"].as_str().unwrap().contains(&a),
        "{}",
        r.body
    );
}

/// A unique decimal written as `1200180190`, `1200180190.0` or as a string is one value,
/// whichever spelling its holder was stored with (the index keeps that spelling, as
/// earlier builds wrote it): the index refuses what a filter would find twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_unique_decimal_is_one_value_however_it_is_written() {
    let s = srv().await;
    let mut unique = s.config.tenants["acme"].extensions.clone();
    for x in unique[0]
        .attributes
        .iter_mut()
        .filter(|x| x.name == "weight")
    {
        x.uniqueness = "server".into();
    }
    s.reloader().apply(declaring(&s, unique)).await.unwrap();
    let weighing = |name: &str, badge: &str, w: Value| {
        let mut p = person(name, 0.0, badge);
        p[EXT]["weight"] = w;
        p
    };
    let a = s
        .post("/Users", weighing("a@x", "B-1", json!(1200180190)))
        .await;
    assert_eq!(a.status, 201, "{}", a.body);
    assert_eq!(a.body[EXT]["weight"], json!(1200180190));
    for (i, w) in [
        json!(1200180190.0),
        json!("1200180190"),
        json!("1.20018019e9"),
    ]
    .into_iter()
    .enumerate()
    {
        let r = s
            .post("/Users", weighing(&format!("b{i}@x"), "B-2", w))
            .await;
        assert_error(&r, 409, Some("uniqueness"));
    }
    let r = s
        .get(&format!("/Users?filter={EXT}:weight eq 1200180190"))
        .await;
    assert_eq!(total(&r), 1, "{}", r.body);
    // Held as a double first, the whole number is refused; a fraction is another value.
    let c = s.post("/Users", weighing("c@x", "B-3", json!(7.0))).await;
    assert_eq!(c.status, 201, "{}", c.body);
    let r = s.post("/Users", weighing("d@x", "B-4", json!(7))).await;
    assert_error(&r, 409, Some("uniqueness"));
    let r = s.post("/Users", weighing("e@x", "B-5", json!(7.5))).await;
    assert_eq!(r.status, 201, "{}", r.body);
    // Its holder writes it the other way without a 409.
    let cid = c.body["id"].as_str().unwrap();
    let r = s
        .patch(
            &format!("/Users/{cid}"),
            json!([{"op": "replace", "path": format!("{EXT}:weight"), "value": 7}]),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = s.post("/Users", weighing("f@x", "B-6", json!(7.0))).await;
    assert_error(&r, 409, Some("uniqueness"));
    // Zero has a third spelling, `-0` (read as -0.0): held so, 0 and 0.0 are refused, and
    // held as 0.0, -0.0 is.
    let g = s.post("/Users", weighing("g@x", "B-7", json!(-0.0))).await;
    assert_eq!(g.status, 201, "{}", g.body);
    for (i, w) in [json!(0), json!(0.0), json!(-0.0)].into_iter().enumerate() {
        let r = s
            .post("/Users", weighing(&format!("h{i}@x"), "B-8", w))
            .await;
        assert_error(&r, 409, Some("uniqueness"));
    }
    let gid = g.body["id"].as_str().unwrap();
    assert_eq!(s.delete(&format!("/Users/{gid}")).await.status, 204);
    let g = s.post("/Users", weighing("g2@x", "B-9", json!(0.0))).await;
    assert_eq!(g.status, 201, "{}", g.body);
    let r = s
        .post("/Users", weighing("h3@x", "B-10", json!(-0.0)))
        .await;
    assert_error(&r, 409, Some("uniqueness"));
    verify_clean(&s).await;
}

/// An extension's attribute named without its URN (clients SHOULD qualify it, RFC 7644
/// §3.10; Entra's older form does not) is that extension's in a PATCH path, a filter,
/// `sortBy` and `attributes`, when one extension alone declares it; a body's top-level keys
/// still count only under their URN (Entra sends `"department": null` there beside the
/// extension's object).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_extension_attribute_named_without_its_urn_is_that_extensions() {
    const ENT: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
    let s = Srv::start_with(|c| {
        // `costCenter` is the enterprise extension's too: named alone, it is neither's.
        c.tenants.get_mut("acme").unwrap().extensions = vec![ExtensionConfig {
            urn: EXT.into(),
            name: "AcmeUser".into(),
            description: String::new(),
            resource: "User".into(),
            attributes: vec![attr("badge", "string"), attr("costCenter", "string")],
        }];
    })
    .await;
    let ann = s
        .post(
            "/Users",
            json!({"userName": "ann@x", ENT: {"department": "Ops", "costCenter": "C1"}}),
        )
        .await
        .id();
    s.post(
        "/Users",
        json!({"userName": "bob@x", ENT: {"department": "Admin"}}),
    )
    .await
    .id();
    let p = format!("/Users/{ann}");
    let r = s
        .patch(
            &p,
            json!([{"op": "replace", "path": "department", "value": "Eng"},
                   {"op": "add", "path": "badge", "value": "B-1"},
                   {"op": "replace", "path": "costCenter", "value": "C2"}]),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body[ENT]["department"], "Eng");
    assert_eq!(r.body[EXT]["badge"], "B-1");
    assert_eq!(r.body[ENT]["costCenter"], "C1", "ambiguous: ignored");
    assert_eq!(r.body[EXT].get("costCenter"), None);
    // A filter and sortBy.
    let r = s.get("/Users?filter=department%20eq%20%22eng%22").await;
    assert_eq!((r.status, total(&r)), (200, 1), "{}", r.body);
    assert_eq!(r.body["Resources"][0]["id"], ann.as_str());
    let r = s.get("/Users?sortBy=department&attributes=userName").await;
    assert_eq!(
        strings(&r.body["Resources"], "userName"),
        ["bob@x", "ann@x"],
        "Admin before Eng"
    );
    assert_error(
        &s.get("/Users?filter=costCenter%20eq%20%22C1%22").await,
        400,
        Some("invalidFilter"),
    );
    // `attributes`: the extension's object with only that attribute.
    let r = s.get(&format!("{p}?attributes=department")).await;
    assert_eq!(r.body[ENT], json!({"department": "Eng"}), "{}", r.body);
    assert_eq!(r.body.get("userName"), None);
    // Entra's older manager form: the attribute named alone, its value in a list of one.
    let boss = s.post("/Users", json!({"userName": "boss@x"})).await.id();
    let r = s
        .patch(
            &p,
            json!([{"op": "add", "path": "manager",
                    "value": [{"$ref": format!("../Users/{boss}"), "value": boss}]}]),
        )
        .await;
    assert_eq!(r.body[ENT]["manager"]["value"], boss.as_str(), "{}", r.body);
    // A body's top-level key is not the extension's: the stored value stays.
    let r = s
        .put(
            &p,
            json!({"userName": "ann@x", "department": "Sales",
                   ENT: {"department": "Eng", "manager": null}}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body[ENT], json!({"department": "Eng"}));
    let r = s
        .patch(&p, json!([{"op": "remove", "path": "department"}]))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body.get(ENT), None, "{}", r.body);
}

/// Okta updates a user by GET, change, PUT (idp-notes §2.4). Attributes returned only on
/// request, or never, were not in what it read: its PUT leaves them out, and keeps them,
/// in a complex attribute too. One the PUT names as null is cleared.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_put_keeps_what_its_client_could_not_see() {
    let declare = |c: &mut scimd::config::Config, hidden: &str| {
        let mut pin = attr("pin", "string");
        pin.returned = hidden.into();
        let mut note = attr("note", "string");
        note.returned = "request".into();
        let mut number = attr("number", "string");
        number.returned = hidden.into();
        let mut expiry = attr("expiry", "string");
        expiry.returned = "request".into();
        let mut card = attr("card", "complex");
        card.sub_attributes = vec![number, expiry, attr("label", "string")];
        c.tenants.get_mut("acme").unwrap().extensions = vec![ExtensionConfig {
            urn: EXT.into(),
            name: "AcmeUser".into(),
            description: String::new(),
            resource: "User".into(),
            attributes: vec![pin, note, attr("badge", "string"), card],
        }];
    };
    let s = Srv::start_with(|c| declare(c, "never")).await;
    let r = s
        .post(
            "/Users",
            json!({"userName": "okta@x", EXT: {"pin": "1234", "note": "n", "badge": "b",
                "card": {"number": "4111", "expiry": "12/30", "label": "work"}}}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let id = r.id();
    let mut read = s.get(&format!("/Users/{id}")).await.body;
    assert_eq!(read[EXT], json!({"badge": "b", "card": {"label": "work"}}));
    read[EXT]["badge"] = json!("b2");
    let put = s.put(&format!("/Users/{id}"), read.clone()).await;
    assert_eq!(put.status, 200, "{}", put.body);
    let asked = format!("/Users/{id}?attributes={EXT}:note,{EXT}:card,{EXT}:badge");
    assert_eq!(
        s.get(&asked).await.body[EXT],
        json!({"note": "n", "badge": "b2", "card": {"expiry": "12/30", "label": "work"}})
    );
    // Named as null, it is the client's to clear.
    read[EXT]["note"] = Value::Null;
    assert_eq!(s.put(&format!("/Users/{id}"), read).await.status, 200);
    assert_eq!(
        s.get(&asked).await.body[EXT],
        json!({"badge": "b2", "card": {"expiry": "12/30", "label": "work"}})
    );
    // The `never` values were kept too: shown once the configuration returns them.
    let dir = s.stop().await;
    let mut cfg = crate::harness::test_config(dir.path());
    declare(&mut cfg, "default");
    let s = Srv::start_config(dir, cfg).await;
    assert_eq!(
        s.get(&format!("/Users/{id}")).await.body[EXT],
        json!({"pin": "1234", "badge": "b2", "card": {"number": "4111", "label": "work"}})
    );
}
