//! The seeded input generator of the fuzz replay: SplitMix64, mutations of
//! seed inputs, random UTF-8, and JSON-, TOML- and HTTP-shaped inputs.

/// SplitMix64: small, seedable, the same everywhere.
pub struct Rng(pub u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
    pub fn byte(&mut self) -> u8 {
        self.next() as u8
    }
    pub fn chance(&mut self, one_in: usize) -> bool {
        self.below(one_in) == 0
    }
}

/// Tokens worth inserting into JSON, TOML, XML and scripts.
const TOKENS: &[&str] = &[
    "{",
    "}",
    "[",
    "]",
    "\"",
    ":",
    ",",
    "=",
    "null",
    "true",
    "false",
    "0",
    "-1",
    "1e309",
    "-0",
    "18446744073709551616",
    "9223372036854775807",
    "\"\\u0000\"",
    "\"\\ud800\"",
    "\\",
    "\n",
    "\r\n",
    "\r\n\r\n",
    "\n---\n",
    "[[",
    "]]",
    "'''",
    "\"\"\"",
    "#",
    "é",
    "\u{10FFFF}",
    "\u{200B}",
    "<",
    ">",
    "</",
    "&amp;",
    "&#x10FFFF;",
    "&#xD800;",
    "&",
    "<Code>",
    "</Code>",
    "<Message>",
    "</Message>",
    "{{",
    "}}",
    "{{key.id}}",
    "1970-01-01T00:00:00Z",
    "2026-13-45",
    "9999-12-31T23:59:59Z",
    "-9999-01-01",
    "P90D",
    "PT0S",
    "\"data\"",
    "\"errors\"",
    "\"links\"",
    "\"next\"",
    "\"id\"",
    "\"secret\"",
    "\"keys\"",
    "\"auth\"",
    "\"client_token\"",
    "\"version\"",
    "\"encryptedSecret\"",
    "\"__type\"",
    "500\r\n\r\n",
    "429\r\nretry-after: 1\r\n\r\n",
    "200\r\nlink: </x>; rel=\"next\"\r\n\r\n",
    "/",
    "%00",
    "..",
    "//",
    "\t",
    " ",
    "\u{0}",
];

fn mutate(rng: &mut Rng, input: &mut Vec<u8>, corpus: &[Vec<u8>]) {
    let len = input.len();
    match rng.below(10) {
        0 if len > 0 => {
            let i = rng.below(len);
            input[i] ^= 1 << rng.below(8);
        }
        1 if len > 0 => {
            let i = rng.below(len);
            input[i] = *[0u8, 0xff, b'"', b'\\', b'\n', b'{', b'[', b'0', 0x80, 0xc3]
                .get(rng.below(12))
                .unwrap_or(&rng.byte());
        }
        2 | 3 => {
            let at = rng.below(len + 1);
            let t = TOKENS[rng.below(TOKENS.len())].as_bytes();
            input.splice(at..at, t.iter().copied());
        }
        4 if len > 0 => {
            let a = rng.below(len);
            let b = (a + 1 + rng.below(16)).min(len);
            input.drain(a..b);
        }
        5 => input.truncate(rng.below(len + 1)),
        6 if !corpus.is_empty() => {
            let other = &corpus[rng.below(corpus.len())];
            let a = rng.below(len + 1);
            let b = rng.below(other.len() + 1);
            input.truncate(a);
            input.extend_from_slice(&other[b..]);
        }
        7 if len > 0 => {
            let a = rng.below(len);
            let b = (a + 1 + rng.below(32)).min(len);
            let chunk = input[a..b].to_vec();
            for _ in 0..1 + rng.below(8) {
                input.splice(b..b, chunk.iter().copied());
            }
        }
        _ => {
            let at = rng.below(len + 1);
            let n = 1 + rng.below(8);
            let bytes: Vec<u8> = (0..n).map(|_| rng.byte()).collect();
            input.splice(at..at, bytes);
        }
    }
}

/// Random text: ASCII, multi-byte characters, controls.
pub fn random_utf8(rng: &mut Rng) -> Vec<u8> {
    let n = rng.below(200);
    let mut s = String::new();
    for _ in 0..n {
        let c = match rng.below(6) {
            0..=2 => char::from(b' ' + (rng.byte() % 95)),
            3 => char::from(rng.byte() % 32),
            4 => char::from_u32(0x80 + rng.below(0x800) as u32).unwrap_or('é'),
            _ => char::from_u32(rng.below(0x11_0000) as u32).unwrap_or('\u{FFFD}'),
        };
        s.push(c);
    }
    s.into_bytes()
}

pub fn json_value(rng: &mut Rng, depth: usize) -> String {
    let scalar = |rng: &mut Rng| -> String {
        match rng.below(9) {
            0 => "null".into(),
            1 => "true".into(),
            2 => (rng.next() as i64).to_string(),
            3 => format!("{}e{}", rng.below(1000), rng.below(400)),
            4 => "\"2026-05-01T00:00:00Z\"".into(),
            5 => "\"2026-05-01\"".into(),
            6 => serde_json::to_string(&String::from_utf8_lossy(&random_utf8(rng))).unwrap(),
            7 => format!("\"{}\"", TOKENS[rng.below(TOKENS.len())].escape_default()),
            _ => format!("\"k{}\"", rng.below(5)),
        }
    };
    if depth == 0 || rng.chance(3) {
        return scalar(rng);
    }
    const KEYS: &[&str] = &[
        "data",
        "id",
        "name",
        "links",
        "next",
        "keys",
        "secret",
        "token",
        "errors",
        "auth",
        "client_token",
        "lease_duration",
        "version",
        "metadata",
        "custom_metadata",
        "result",
        "expires_at",
        "expiresAt",
        "status",
        "scopes",
        "encryptedSecret",
        "encryption",
        "algorithm",
        "keyWrap",
        "pskId",
        "key",
        "reason",
        "createdBy",
        "attributes",
        "ttl",
    ];
    if rng.chance(2) {
        let items: Vec<String> = (0..rng.below(4))
            .map(|_| json_value(rng, depth - 1))
            .collect();
        format!("[{}]", items.join(","))
    } else {
        let items: Vec<String> = (0..rng.below(5))
            .map(|_| {
                format!(
                    "\"{}\":{}",
                    KEYS[rng.below(KEYS.len())],
                    json_value(rng, depth - 1)
                )
            })
            .collect();
        format!("{{{}}}", items.join(","))
    }
}

pub fn toml_doc(rng: &mut Rng) -> String {
    const TABLES: &[&str] = &[
        "[daemon]",
        "[store]",
        "[[provider]]",
        "[[sink]]",
        "[[policy]]",
        "[[key]]",
        "[notify]",
        "[daemon.retry]",
        "[provider.list]",
        "[[psk]]",
        "[[api_token]]",
    ];
    const KEYS: &[&str] = &[
        "name",
        "type",
        "path",
        "provider",
        "policy",
        "sinks",
        "command",
        "base_url",
        "new_key_lifetime",
        "rotate_before_expiry",
        "overlap",
        "window",
        "timezone",
        "schedule",
        "token",
        "address",
        "field",
        "admin_key",
        "org_id",
        "items",
        "id",
        "secret",
        "format",
        "control_socket",
        "master_key_file",
        "from",
        "transport",
        "notify",
        "jitter",
        "scopes",
    ];
    let mut s = String::new();
    for _ in 0..rng.below(8) {
        s.push_str(TABLES[rng.below(TABLES.len())]);
        s.push('\n');
        for _ in 0..rng.below(5) {
            let v = match rng.below(7) {
                0 => format!(
                    "\"{}\"",
                    ["local", "http", "exec", "file", "openbao", "90d", "1h"][rng.below(7)]
                ),
                1 => rng.below(100).to_string(),
                2 => "[\"a\", \"b\"]".into(),
                3 => "{ file = \"x\" }".into(),
                4 => "true".into(),
                5 => "1979-05-27T07:32:00Z".into(),
                _ => json_value(rng, 2),
            };
            s.push_str(&format!("{} = {v}\n", KEYS[rng.below(KEYS.len())]));
        }
    }
    s
}

/// One generated input: a mutated seed, random text, or a shaped input
/// behind a seed's first line (the target's selector).
pub fn generate(
    rng: &mut Rng,
    corpus: &[Vec<u8>],
    shaped: &dyn Fn(&mut Rng) -> Vec<u8>,
) -> Vec<u8> {
    let mut input = match rng.below(10) {
        0 => random_utf8(rng),
        1 | 2 => shaped(rng),
        _ if corpus.is_empty() => shaped(rng),
        _ => corpus[rng.below(corpus.len())].clone(),
    };
    for _ in 0..1 + rng.below(4) {
        mutate(rng, &mut input, corpus);
    }
    input.truncate(64 * 1024);
    input
}

/// A selector line from the corpus, then a shaped body.
pub fn with_selector(
    corpus: Vec<Vec<u8>>,
    body: fn(&mut Rng) -> Vec<u8>,
) -> impl Fn(&mut Rng) -> Vec<u8> {
    move |rng: &mut Rng| {
        let seed = &corpus[rng.below(corpus.len())];
        let line_end = seed.iter().position(|&b| b == b'\n').unwrap_or(seed.len());
        let mut out = seed[..line_end].to_vec();
        out.push(b'\n');
        out.extend(body(rng));
        out
    }
}

pub fn json_bytes(rng: &mut Rng) -> Vec<u8> {
    json_value(rng, 5).into_bytes()
}

/// A script of one to three HTTP answers with JSON bodies.
pub fn http_script(rng: &mut Rng) -> Vec<u8> {
    let mut parts = Vec::new();
    for _ in 0..1 + rng.below(3) {
        let status = [200, 200, 201, 204, 400, 401, 403, 404, 409, 429, 500, 503][rng.below(12)];
        let header = match rng.below(4) {
            0 => "retry-after: 3\r\n".to_string(),
            1 => "link: </next?page=2>; rel=\"next\"\r\n".to_string(),
            _ => String::new(),
        };
        parts.push(format!("{status}\r\n{header}\r\n{}", json_value(rng, 5)));
    }
    parts.join("\n---\n").into_bytes()
}
