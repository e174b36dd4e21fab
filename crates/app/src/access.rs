//! Who may act: a token's stored row (principal, expiry, revocation), read in its own
//! transaction. The server decides from it whether a credential is still good.

use suanli_store::Store;
use suanli_store::tokens::{self, TokenRow};

/// The stored row of the token whose sha256 (hex) is `token_hash`, if any.
pub fn token(store: &mut dyn Store, token_hash: &str) -> suanli_store::Result<Option<TokenRow>> {
    let mut row = None;
    store.transaction(&mut |tx| {
        row = tokens::lookup(tx, token_hash)?;
        Ok(())
    })?;
    Ok(row)
}
