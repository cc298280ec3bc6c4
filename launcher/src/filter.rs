//! The BPF filter tcpdump gets: the user's filter, less what must never be
//! recorded (the node's credential endpoints) and what would feed back into
//! the captures (the uploader's own uploads), plus the launcher's ticks.
//!
//! The exclusions wrap the user's filter whole, `(<filter>) and not (…)`,
//! so no filter can admit what they leave out; only the ticks are added
//! after them, and a tick is never a credential or an upload packet.

/// The link-local endpoints that hand out cloud credentials over plain
/// HTTP, left out of every capture by default, both directions:
///
/// - 169.254.169.254 and fd00:ec2::254: the instance metadata service (the
///   node role's keys, for the kubelet and the CNI; the same address on
///   GCP, Azure and OCI);
/// - 169.254.170.23 and fd00:ec2::23: the EKS Pod Identity agent (every
///   pod's role keys, over its veth);
/// - 169.254.170.2: the ECS agent's credential endpoint.
///
/// A capture holding their answers would give whoever reads the bucket the
/// node's role and every pod's role.
pub const CREDENTIAL_ENDPOINTS: [&str; 5] = [
    "169.254.169.254",
    "fd00:ec2::254",
    "169.254.170.23",
    "fd00:ec2::23",
    "169.254.170.2",
];

/// The port of AWS S3 (HTTPS), where the uploader sends unless
/// `S3_ENDPOINT_URL` says otherwise.
pub const DEFAULT_S3_PORT: u16 = 443;

/// What the launcher leaves out of the user's filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exclusions {
    /// Leave out the [`CREDENTIAL_ENDPOINTS`].
    pub credential_endpoints: bool,
    /// Leave out the uploader's marked packets to S3 on this TCP port.
    pub own_uploads_to_port: Option<u16>,
}

/// The filter tcpdump compiles: the user's (empty: every packet) less the
/// exclusions, plus the ticks. Empty when nothing is filtered at all.
pub fn build(user_filter: &str, exclusions: Exclusions) -> String {
    let mut left_out = Vec::new();
    if exclusions.credential_endpoints {
        left_out.push(credential_endpoints_filter());
    }
    if let Some(port) = exclusions.own_uploads_to_port {
        left_out.push(spool::upload_connection_filter(port));
    }
    if left_out.is_empty() {
        return with_ticks(user_filter);
    }
    let mut parts: Vec<String> = Vec::new();
    if !user_filter.trim().is_empty() {
        parts.push(format!("({user_filter})"));
    }
    parts.extend(left_out.iter().map(|expr| format!("not ({expr})")));
    with_ticks(&parts.join(" and "))
}

/// A BPF expression for every packet to or from a credential endpoint.
pub fn credential_endpoints_filter() -> String {
    CREDENTIAL_ENDPOINTS
        .iter()
        .map(|address| format!("host {address}"))
        .collect::<Vec<_>>()
        .join(" or ")
}

/// The port the uploader sends to: the one in `S3_ENDPOINT_URL`, else the
/// scheme's (80 for http, 443 for https), else AWS S3's.
pub fn s3_port(endpoint_url: Option<&str>) -> Result<u16, String> {
    let Some(url) = endpoint_url else {
        return Ok(DEFAULT_S3_PORT);
    };
    let uri: http::Uri = url.parse().map_err(|e| format!("{e}"))?;
    if uri.host().is_none() {
        return Err("it has no host (expected e.g. http://127.0.0.1:3900)".to_owned());
    }
    match (uri.port_u16(), uri.scheme_str()) {
        (Some(port), _) => Ok(port),
        (None, Some("https")) => Ok(443),
        (None, Some("http")) => Ok(80),
        (None, other) => Err(format!(
            "scheme {other:?} is neither http nor https and no port is given"
        )),
    }
}

/// Admits the launcher's ticks ([`spool::tick`]) whatever the user's
/// filter: they give tcpdump a packet to rotate on every second and the
/// launcher a heartbeat to watch.
fn with_ticks(filter: &str) -> String {
    let tick = spool::tick::TICK_FILTER;
    if filter.trim().is_empty() {
        String::new()
    } else {
        format!("({filter}) or ({tick})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const UPLOADS: &str = "tcp dst port 443 and ((ip and (ip[1] & 0xfc) == 0x4) or (ip6 and (ip6[0:2] & 0xfc0) == 0x40))";
    const CREDENTIALS: &str = "host 169.254.169.254 or host fd00:ec2::254 or host 169.254.170.23 or host fd00:ec2::23 or host 169.254.170.2";
    const DEFAULTS: Exclusions = Exclusions {
        credential_endpoints: true,
        own_uploads_to_port: Some(443),
    };

    fn tick() -> &'static str {
        spool::tick::TICK_FILTER
    }

    #[test]
    fn no_filter_becomes_the_exclusions_alone_plus_ticks() {
        assert_eq!(
            build("", DEFAULTS),
            format!("(not ({CREDENTIALS}) and not ({UPLOADS})) or ({})", tick())
        );
    }

    #[test]
    fn user_filter_is_kept_whole_and_excluded_from_so_it_cannot_readmit_credentials() {
        assert_eq!(
            build("port 80 or host 169.254.169.254", DEFAULTS),
            format!(
                "((port 80 or host 169.254.169.254) and not ({CREDENTIALS}) and not ({UPLOADS})) or ({})",
                tick()
            )
        );
    }

    #[test]
    fn with_both_opt_ins_an_empty_filter_stays_empty_and_ticks_pass_any_other() {
        let none = Exclusions {
            credential_endpoints: false,
            own_uploads_to_port: None,
        };
        assert_eq!(build("", none), "");
        assert_eq!(build("port 53", none), format!("(port 53) or ({})", tick()));
    }

    #[test]
    fn the_upload_exclusion_names_the_s3_port() {
        let only_uploads = Exclusions {
            credential_endpoints: false,
            own_uploads_to_port: Some(3900),
        };
        assert_eq!(
            build("", only_uploads),
            format!("(not ({})) or ({})", UPLOADS.replace("443", "3900"), tick())
        );
    }

    #[test]
    fn the_s3_port_comes_from_the_endpoint_url_or_its_scheme() {
        assert_eq!(s3_port(None), Ok(443));
        assert_eq!(s3_port(Some("http://127.0.0.1:3900")), Ok(3900));
        assert_eq!(s3_port(Some("http://garage.local")), Ok(80));
        assert_eq!(s3_port(Some("https://s3.eu-west-1.amazonaws.com")), Ok(443));
        assert_eq!(s3_port(Some("https://[fd00::1]:9000/")), Ok(9000));
        assert!(s3_port(Some("ftp://example.com")).is_err());
        assert!(s3_port(Some("not a url")).is_err());
    }
}
