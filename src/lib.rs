//! depd: a daemon for Apple's Automated Device Enrollment API.
