vcl 4.1;
# The Docker-host target's CDN: Varnish, shared by every environment of the host, written into
# $FM_STACK_DIR/varnish by scripts/stack.sh (ORIGIN_SOCKET is replaced there).
#
# Path of a request: HAProxy's public frontend of a service (fe_<env>_<service>, the port users
# know) -> this cache -> HAProxy's origin frontend -> the service's live slot. HAProxy's frontend
# names the service's backend (X-FM-Backend) and its live version and slot (X-FM-Live-Version,
# X-FM-Live-Slot, from the environment's map, which a switch updates at once); the origin answers
# with the slot that served (X-FM-Slot). See docs/cdn.md for the rules and why.

import std;

backend origin {
    .path = "ORIGIN_SOCKET";
    .connect_timeout = 2s;
    .first_byte_timeout = 60s;
    .between_bytes_timeout = 30s;
}

sub vcl_recv {
    # Only HAProxy's frontends send X-FM-Backend; anything else is not ours to serve.
    if (!req.http.X-FM-Backend) {
        return (synth(421, "Misdirected Request"));
    }
    if (req.method == "BAN" || req.method == "PURGE") {
        return (synth(405, "Method Not Allowed"));
    }
    unset req.http.X-FM-Static;
    # Next.js's build output: content-hashed names, so one URL is one content in every version.
    # Kept across versions (a page of the previous version still loads its assets: version
    # skew) and never banned by a release. Keyed without the query (?dpl=<deployment id>).
    if (req.url ~ "^/_next/static/") {
        set req.http.X-FM-Static = "1";
    }
    # What is private is never looked up nor stored: the admin (HAProxy marks its paths),
    # any request that carries credentials (a cookie or an Authorization header), anything
    # but GET and HEAD.
    if (req.http.X-FM-Private || req.http.Authorization || req.http.Cookie) {
        return (pass);
    }
    if (req.method != "GET" && req.method != "HEAD") {
        return (pass);
    }
    return (hash);
}

sub vcl_hash {
    hash_data(req.http.X-FM-Backend);
    if (req.http.X-FM-Static) {
        hash_data(regsub(req.url, "\?.*$", ""));
    } else {
        # One version's pages never answer for another's: the key holds the live version.
        hash_data(req.http.X-FM-Live-Version);
        hash_data(req.url);
    }
    return (lookup);
}

sub vcl_backend_response {
    # For bans (the ban lurker tests objects, not requests).
    set beresp.http.X-FM-Backend = bereq.http.X-FM-Backend;
    set beresp.http.X-FM-Version = bereq.http.X-FM-Live-Version;
    if (bereq.http.X-FM-Static) {
        set beresp.http.X-FM-Static = "1";
    }
    if (bereq.uncacheable) {
        return (deliver);
    }
    # Stored only what the app marks cacheable for shared caches, and nothing private. What is
    # not stored is remembered as such for 2 minutes ("hit-for-miss": the next request goes to
    # the origin at once, not queued behind another's fetch; a cacheable answer replaces it).
    if (beresp.http.Set-Cookie
        || beresp.http.Cache-Control ~ "(?i)(private|no-store|no-cache)"
        || !(beresp.http.Cache-Control ~ "(?i)(s-maxage|max-age)=[1-9]" || beresp.http.Expires)
        || beresp.status >= 500) {
        set beresp.uncacheable = true;
        set beresp.ttl = 120s;
        return (deliver);
    }
    # An answer of a slot that is no longer (or not yet) the live one: a request that went out
    # just before or after a switch. Delivered, never stored under the live version's key.
    if (!bereq.http.X-FM-Static && beresp.http.X-FM-Slot != bereq.http.X-FM-Live-Slot) {
        set beresp.uncacheable = true;
        set beresp.ttl = 120s;
        return (deliver);
    }
    # A page is served stale (while it is fetched again) for at most 10 s past its s-maxage,
    # whatever stale-while-revalidate allows (Next.js says a year): a page nobody asked for in
    # an hour is fetched, not served an hour old.
    if (!bereq.http.X-FM-Static && beresp.grace > 10s) {
        set beresp.grace = 10s;
    }
    return (deliver);
}

sub vcl_deliver {
    if (obj.hits > 0) {
        set resp.http.X-Cache = "HIT";
    } else {
        set resp.http.X-Cache = "MISS";
    }
    unset resp.http.X-FM-Backend;
    unset resp.http.X-FM-Version;
    unset resp.http.X-FM-Static;
    unset resp.http.X-FM-Slot;
    unset resp.http.Via;
    unset resp.http.X-Varnish;
}
