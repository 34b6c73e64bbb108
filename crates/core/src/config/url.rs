//! Credentials in URLs (`scheme://user:password@host/…`): split off for the pipeline, masked
//! everywhere else. The one place that parses them.

/// A URL's user and password, and the URL without them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The URL without `user[:password]@`.
    pub clean: String,
    pub user: Option<String>,
    pub password: Option<String>,
}

/// Splits `scheme://user:password@host/…` into the URL without credentials, the user and the
/// password (each absent when the URL has none).
pub fn split(url: &str) -> Credentials {
    let none = || Credentials {
        clean: url.to_owned(),
        user: None,
        password: None,
    };
    let Some(scheme_end) = url.find("://") else {
        return none();
    };
    let rest = &url[scheme_end + 3..];
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let Some(at) = rest[..authority_end].rfind('@') else {
        return none();
    };
    let userinfo = &rest[..at];
    let (user, password) = match userinfo.split_once(':') {
        Some((u, p)) => (u, Some(p.to_owned())),
        None => (userinfo, None),
    };
    Credentials {
        clean: format!("{}{}", &url[..scheme_end + 3], &rest[at + 1..]),
        user: Some(user.to_owned()),
        password,
    }
}

/// The URL with any password replaced by `***`.
pub fn redact(url: &str) -> String {
    let parts = split(url);
    match (&parts.user, &parts.password) {
        (Some(user), Some(_)) => {
            let scheme_end = url.find("://").map_or(0, |i| i + 3);
            format!("{}{user}:***@{}", &url[..scheme_end], &parts.clean[scheme_end..])
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_passwords_only() {
        assert_eq!(
            redact("rtsp://admin:s3cret@10.0.0.2:554/live"),
            "rtsp://admin:***@10.0.0.2:554/live"
        );
        assert_eq!(redact("rtsp://admin@cam/live"), "rtsp://admin@cam/live");
        assert_eq!(redact("rtsp://cam/a@b"), "rtsp://cam/a@b");
        assert_eq!(redact("not a url"), "not a url");
    }

    #[test]
    fn splits_user_and_password() {
        let c = split("rtsp://admin:pw@cam:554/live");
        assert_eq!(c.clean, "rtsp://cam:554/live");
        assert_eq!((c.user.as_deref(), c.password.as_deref()), (Some("admin"), Some("pw")));
        assert_eq!(split("rtsp://admin@cam/live").user.as_deref(), Some("admin"));
        assert_eq!(split("rtsp://cam/live").user, None);
    }
}
