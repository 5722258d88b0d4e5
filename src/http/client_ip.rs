//! The client's IP address: the TCP peer, or, when the peer is a configured trusted
//! proxy, the right-most untrusted address of `X-Forwarded-For`. Never used to derive
//! the issuer or any URL.

use std::net::IpAddr;

use actix_web::HttpRequest;

pub fn client_ip(req: &HttpRequest, trusted_proxies: &[IpAddr]) -> Option<IpAddr> {
    let peer = req.peer_addr()?.ip();
    if !trusted_proxies.contains(&peer) {
        return Some(peer);
    }
    let mut forwarded: Vec<IpAddr> = Vec::new();
    for value in req.headers().get_all("x-forwarded-for") {
        let Ok(text) = value.to_str() else {
            return Some(peer);
        };
        for part in text.split(',') {
            match part.trim().parse::<IpAddr>() {
                Ok(ip) => forwarded.push(ip),
                Err(_) => return Some(peer),
            }
        }
    }
    // Walk from the closest hop outwards; the first address not ours is the client.
    Some(
        forwarded
            .into_iter()
            .rev()
            .find(|ip| !trusted_proxies.contains(ip))
            .unwrap_or(peer),
    )
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
    fn garbage_forwarded_headers_fall_back_to_the_peer() {
        let req = TestRequest::default()
            .peer_addr("10.0.0.1:4000".parse().unwrap_or_else(|e| panic!("{e}")))
            .insert_header(("x-forwarded-for", "not-an-ip"))
            .to_http_request();
        assert_eq!(client_ip(&req, &[ip("10.0.0.1")]), Some(ip("10.0.0.1")));
    }
}
