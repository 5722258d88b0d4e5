//! The client's IP address: the TCP peer, or, when the peer is a configured trusted
//! proxy, the right-most untrusted address of `X-Forwarded-For`. Never used to derive
//! the issuer or any URL.

use std::net::IpAddr;

use actix_web::HttpRequest;

pub fn client_ip(req: &HttpRequest, trusted_proxies: &[IpAddr]) -> Option<IpAddr> {
    // An IPv4 peer on a dual-stack socket shows up as `::ffff:a.b.c.d`: compare (and
    // report) the IPv4 address, as configured.
    let peer = req.peer_addr()?.ip().to_canonical();
    if !trusted_proxies.contains(&peer) {
        return Some(peer);
    }
    // Hops in order, nearest last. Everything left of the first untrusted hop was written
    // by the client and is never even parsed: one garbage entry there must not move the
    // request into the proxy's bucket.
    let mut hops: Vec<&str> = Vec::new();
    for value in req.headers().get_all("x-forwarded-for") {
        match value.to_str() {
            Ok(text) => hops.extend(text.split(',').map(str::trim)),
            Err(_) => return Some(peer),
        }
    }
    let mut nearest_trusted = peer;
    for hop in hops.iter().rev() {
        match parse_hop(hop).map(|ip| ip.to_canonical()) {
            Some(ip) if trusted_proxies.contains(&ip) => nearest_trusted = ip,
            Some(ip) => return Some(ip),
            // Our own proxy wrote something unreadable: the best we know is that proxy.
            None => return Some(nearest_trusted),
        }
    }
    Some(nearest_trusted)
}

/// `203.0.113.7`, `203.0.113.7:4711`, `2001:db8::1` or `[2001:db8::1]:4711`.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    hop.parse::<IpAddr>()
        .ok()
        .or_else(|| hop.parse::<std::net::SocketAddr>().ok().map(|s| s.ip()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn untrusted_peers_cannot_spoof_their_address() {
        let req = TestRequest::default()
            .peer_addr("203.0.113.9:4000".parse().unwrap_or_else(|e| panic!("{e}")))
            .insert_header(("x-forwarded-for", "1.2.3.4"))
            .to_http_request();
        assert_eq!(client_ip(&req, &[]), Some(ip("203.0.113.9")));
    }

    #[test]
    fn trusted_proxies_hand_over_the_rightmost_untrusted_hop() {
        let req = TestRequest::default()
            .peer_addr("10.0.0.1:4000".parse().unwrap_or_else(|e| panic!("{e}")))
            .insert_header(("x-forwarded-for", "1.2.3.4, 198.51.100.7, 10.0.0.2"))
            .to_http_request();
        let trusted = [ip("10.0.0.1"), ip("10.0.0.2")];
        assert_eq!(client_ip(&req, &trusted), Some(ip("198.51.100.7")));
    }

    #[test]
    fn an_ipv4_proxy_on_a_dual_stack_socket_is_still_trusted() {
        let req = TestRequest::default()
            .peer_addr(
                "[::ffff:10.0.0.1]:4000"
                    .parse()
                    .unwrap_or_else(|e| panic!("{e}")),
            )
            .insert_header(("x-forwarded-for", "198.51.100.7"))
            .to_http_request();
        assert_eq!(client_ip(&req, &[ip("10.0.0.1")]), Some(ip("198.51.100.7")));
        let direct = TestRequest::default()
            .peer_addr(
                "[::ffff:203.0.113.9]:4000"
                    .parse()
                    .unwrap_or_else(|e| panic!("{e}")),
            )
            .to_http_request();
        assert_eq!(client_ip(&direct, &[]), Some(ip("203.0.113.9")));
    }

    #[test]
    fn garbage_written_by_the_client_is_never_read() {
        // nginx's proxy_add_x_forwarded_for keeps what the client sent and appends the
        // real address: the client's part must not decide anything.
        let req = TestRequest::default()
            .peer_addr("10.0.0.1:4000".parse().unwrap_or_else(|e| panic!("{e}")))
            .insert_header(("x-forwarded-for", "x, unknown, 203.0.113.5"))
            .to_http_request();
        assert_eq!(client_ip(&req, &[ip("10.0.0.1")]), Some(ip("203.0.113.5")));
        let with_port = TestRequest::default()
            .peer_addr("10.0.0.1:4000".parse().unwrap_or_else(|e| panic!("{e}")))
            .insert_header(("x-forwarded-for", "203.0.113.5:51000"))
            .to_http_request();
        assert_eq!(
            client_ip(&with_port, &[ip("10.0.0.1")]),
            Some(ip("203.0.113.5"))
        );
    }

    #[test]
    fn garbage_forwarded_headers_fall_back_to_the_peer() {
        let req = TestRequest::default()
            .peer_addr("10.0.0.1:4000".parse().unwrap_or_else(|e| panic!("{e}")))
            .insert_header(("x-forwarded-for", "not-an-ip"))
            .to_http_request();
        assert_eq!(client_ip(&req, &[ip("10.0.0.1")]), Some(ip("10.0.0.1")));
    }
}
