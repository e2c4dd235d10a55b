//! banhammer-accesslog: access-log lines, parsed.
