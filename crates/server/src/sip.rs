//! SIP listeners (driver). Owned by the signaling work; see `natter_sip`.
