//! STUN/TURN listeners (driver). Owned by the TURN work; see `natter_turn`.
