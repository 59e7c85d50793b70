//! The metric families depd exports, their fixed bucket bounds, and the
//! fixed table Apple endpoint labels come from.

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Kind {
    Counter,
    Gauge,
    Histogram,
}

impl Kind {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// A metric family: the name comes first so families sort by name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Family {
    pub(super) name: &'static str,
    pub(super) help: &'static str,
    pub(super) kind: Kind,
}

pub(super) const HTTP_REQUESTS: Family = Family {
    name: "depd_http_requests_total",
    help: "HTTP requests answered by depd, by matched route pattern, method and status.",
    kind: Kind::Counter,
};
pub(super) const APPLE_REQUESTS: Family = Family {
    name: "depd_apple_requests_total",
    help: "Requests to Apple's DEP API by DEP name, endpoint and status (0: no answer).",
    kind: Kind::Counter,
};
pub(super) const APPLE_RETRIES: Family = Family {
    name: "depd_apple_retries_total",
    help: "Requests to Apple sent again within a sync cycle after a transient failure (5xx, 429, timeout, connection error), by DEP name and endpoint.",
    kind: Kind::Counter,
};
pub(super) const APPLE_SESSIONS: Family = Family {
    name: "depd_apple_sessions_total",
    help: "Calls to Apple's /session by DEP name and result.",
    kind: Kind::Counter,
};
pub(super) const SYNC_CYCLES: Family = Family {
    name: "depd_sync_cycles_total",
    help: "Finished sync cycles by DEP name and outcome.",
    kind: Kind::Counter,
};
pub(super) const SYNC_DEVICES: Family = Family {
    name: "depd_sync_devices_total",
    help: "Device records received from Apple by DEP name and op_type.",
    kind: Kind::Counter,
};
pub(super) const ASSIGNMENTS: Family = Family {
    name: "depd_assignments_total",
    help: "Per-serial profile assignment results by DEP name and result.",
    kind: Kind::Counter,
};
pub(super) const WEBHOOK_DELIVERIES: Family = Family {
    name: "depd_webhook_deliveries_total",
    help: "Webhook delivery attempts by DEP name and result.",
    kind: Kind::Counter,
};
pub(super) const WEBHOOK_BACKLOG: Family = Family {
    name: "depd_webhook_backlog",
    help: "Webhook events waiting for delivery, by DEP name.",
    kind: Kind::Gauge,
};
pub(super) const TOKEN_DAYS: Family = Family {
    name: "depd_token_days_to_expiry",
    help: "Whole days until the DEP name's OAuth tokens expire (negative: expired).",
    kind: Kind::Gauge,
};
pub(super) const INVENTORY_DEVICES: Family = Family {
    name: "depd_inventory_devices",
    help: "Devices in the DEP name's inventory.",
    kind: Kind::Gauge,
};
pub(super) const UP: Family = Family {
    name: "depd_up",
    help: "1 while depd serves.",
    kind: Kind::Gauge,
};
pub(super) const BUILD_INFO: Family = Family {
    name: "depd_build_info",
    help: "depd's version, as a label; the value is always 1.",
    kind: Kind::Gauge,
};

pub(super) const MDM_WEBHOOK_DELIVERIES: Family = Family {
    name: "depd_mdm_webhook_deliveries_total",
    help: "MDM webhook delivery attempts by result.",
    kind: Kind::Counter,
};
pub(super) const MDM_MESSAGES: Family = Family {
    name: "depd_mdm_messages_total",
    help: "MDM check-ins and reports answered, by message type and HTTP status.",
    kind: Kind::Counter,
};

pub(super) const PUSHES: Family = Family {
    name: "depd_push_total",
    help: "APNs pushes by topic and result (delivered, APNs's reason, http_<status>, or transport).",
    kind: Kind::Counter,
};
pub(super) const PUSH_DURATION: Family = Family {
    name: "depd_push_duration_seconds",
    help: "Time from sending a push to APNs's answer, by result.",
    kind: Kind::Histogram,
};
pub(super) const PUSH_RETRIES: Family = Family {
    name: "depd_push_retries_total",
    help: "APNs pushes sent again after a throttle, a server fault or a lost connection, by topic.",
    kind: Kind::Counter,
};
pub(super) const PUSH_CERT_DAYS: Family = Family {
    name: "depd_push_cert_days_to_expiry",
    help: "Whole days until the topic's push certificate expires (negative: expired).",
    kind: Kind::Gauge,
};

pub(super) const AUTH_FAILURES: Family = Family {
    name: "depd_auth_failures_total",
    help: "Requests refused for wrong API credentials (requests without credentials are not counted).",
    kind: Kind::Counter,
};
pub(super) const HTTP_DURATION: Family = Family {
    name: "depd_http_request_duration_seconds",
    help: "Time to answer an HTTP request (until the answer's head; a proxied body streams after), by matched route pattern.",
    kind: Kind::Histogram,
};
pub(super) const APPLE_DURATION: Family = Family {
    name: "depd_apple_request_duration_seconds",
    help: "Time from sending a request to Apple until its answer's head (or the failure), by endpoint.",
    kind: Kind::Histogram,
};
pub(super) const WEBHOOK_DURATION: Family = Family {
    name: "depd_webhook_delivery_duration_seconds",
    help: "Time of one webhook delivery attempt until the receiver's answer (or the failure), by result.",
    kind: Kind::Histogram,
};

/// Upper bounds of the histogram buckets, in microseconds (1 ms to 60 s;
/// `+Inf` is implied).
pub(super) const BUCKETS_US: [u64; 14] = [
    1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000, 2_500_000,
    5_000_000, 10_000_000, 60_000_000,
];

/// Apple's DEP endpoints, the only values of the `endpoint` label besides
/// `other`: a proxied path is the caller's choice, and labelling by it
/// would let any caller create series without end.
pub(super) const APPLE_ENDPOINTS: [&str; 12] = [
    "/session",
    "/account",
    "/server/devices",
    "/devices/sync",
    "/devices",
    "/devices/disown",
    "/device/activationlock",
    "/profile",
    "/profile/devices",
    "/os-beta-enrollment/tokens",
    "/account-driven-enrollment/profile",
    "/mdm/profile",
];

/// The `endpoint` label of a request path (the query is ignored).
pub fn endpoint_label(path: &str) -> &'static str {
    let path = path.split('?').next().unwrap_or_default();
    let path = if path.len() > 1 {
        path.trim_end_matches('/')
    } else {
        path
    };
    APPLE_ENDPOINTS
        .into_iter()
        .find(|e| *e == path)
        .unwrap_or("other")
}

/// The per-name gauges, all labelled by `dep_name` alone.
pub(super) const NAME_GAUGES: [Family; 3] = [WEBHOOK_BACKLOG, TOKEN_DAYS, INVENTORY_DEVICES];

/// Methods kept as they are; anything else is `other`, so a client sending
/// made-up methods cannot grow the registry.
pub(super) const METHODS: [&str; 9] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE",
];
