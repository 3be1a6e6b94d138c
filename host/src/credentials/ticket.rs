//! Tickets: what a connect link and an OAuth `state` carry, sealed with
//! ChaCha20-Poly1305 under a key derived from the credential store's, so
//! that any replica with the key can read one, nobody can read or alter
//! one without it, and no server-side state is needed between the
//! client's link, the user's browser and the provider's redirect.

use super::store::Owner;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Serialize};

/// How long a link or a sign-in at the provider may take.
pub const TICKET_LIFETIME_S: u64 = 600;

/// Who is connecting what, until when, and at which step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ticket {
    /// The caller the credential will belong to.
    pub owner: Owner,
    /// Seconds since the epoch after which the ticket is refused.
    pub expires_at: u64,
    /// Which step it opens: one step's ticket never opens another.
    pub step: Step,
}

/// What a ticket opens.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Step {
    /// The link the caller is given: Moat's page.
    Link,
    /// An OAuth `state`: the provider's return, in the browser that left.
    SignIn(Return),
    /// The `state` of signing the browser's user in at the MCP endpoint's
    /// own authorization server, to check they are the link's caller.
    Verify(Return),
    /// A cookie saying the browser's user signed in as the owner (whose
    /// `connection` is empty: it holds for every connection).
    Verified,
}

/// What an authorization server's redirect back must match.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Return {
    /// PKCE's code verifier.
    pub verifier: String,
    /// The SHA-256 (hex) of the nonce in the cookie of the browser that
    /// left for the authorization server.
    pub browser: String,
}

impl Step {
    fn same_kind(&self, other: &Step) -> bool {
        std::mem::discriminant(self) == std::mem::discriminant(other)
    }
}

/// Why a ticket is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TicketError {
    /// Not one this Moat sealed, or altered.
    #[error("this link is not valid (altered, or made by another server)")]
    Invalid,
    /// Past its lifetime.
    #[error("this link has expired; call the tool again for a new one")]
    Expired,
    /// A ticket of another step.
    #[error("this link is not valid here")]
    WrongStep,
}

/// Seals and opens tickets.
pub struct Sealer {
    key: LessSafeKey,
}

impl Sealer {
    /// A sealer with `key` (32 bytes).
    pub fn new(key: &[u8]) -> Sealer {
        Sealer {
            key: LessSafeKey::new(UnboundKey::new(&CHACHA20_POLY1305, key).expect("a 32-byte key")),
        }
    }

    /// `ticket`, sealed, as URL-safe text.
    pub fn seal(&self, ticket: &Ticket) -> String {
        let mut nonce = [0; NONCE_LEN];
        SystemRandom::new()
            .fill(&mut nonce)
            .expect("the system's random numbers");
        let mut bytes = serde_json::to_vec(ticket).expect("a ticket serialises");
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(b"moat ticket"),
                &mut bytes,
            )
            .expect("sealing in memory");
        let mut out = nonce.to_vec();
        out.extend(bytes);
        URL_SAFE_NO_PAD.encode(out)
    }

    /// The ticket sealed in `text`, if it is whole, not expired at `now`
    /// and of the same kind of step as `step` (whose fields are ignored).
    pub fn open(&self, text: &str, now: u64, step: &Step) -> Result<Ticket, TicketError> {
        let mut bytes = URL_SAFE_NO_PAD
            .decode(text)
            .map_err(|_| TicketError::Invalid)?;
        if bytes.len() < NONCE_LEN {
            return Err(TicketError::Invalid);
        }
        let nonce: [u8; NONCE_LEN] = bytes[..NONCE_LEN].try_into().expect("sliced");
        let plain = self
            .key
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(b"moat ticket"),
                &mut bytes[NONCE_LEN..],
            )
            .map_err(|_| TicketError::Invalid)?;
        let ticket: Ticket = serde_json::from_slice(plain).map_err(|_| TicketError::Invalid)?;
        if ticket.expires_at < now {
            return Err(TicketError::Expired);
        }
        if !ticket.step.same_kind(step) {
            return Err(TicketError::WrongStep);
        }
        Ok(ticket)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ticket() -> Ticket {
        Ticket {
            owner: Owner {
                tenant: Some("acme".into()),
                issuer: "https://issuer".into(),
                subject: "alice".into(),
                connection: "gh".into(),
            },
            expires_at: 1_000,
            step: Step::SignIn(back()),
        }
    }

    fn back() -> Return {
        Return {
            verifier: "v".repeat(43),
            browser: "b".repeat(64),
        }
    }

    #[test]
    fn a_ticket_opens_whole_until_it_expires_and_never_altered() {
        let sealer = Sealer::new(&[1; 32]);
        let text = sealer.seal(&ticket());
        assert!(!text.contains("alice") && !text.contains('/') && !text.contains('+'));
        let sign_in = Step::SignIn(back());
        assert_eq!(sealer.open(&text, 999, &sign_in), Ok(ticket()));
        assert_eq!(
            sealer.open(&text, 1_001, &sign_in),
            Err(TicketError::Expired)
        );
        // One step's ticket opens no other step.
        let steps = [Step::Link, sign_in, Step::Verify(back()), Step::Verified];
        for (i, sealed) in steps.iter().enumerate() {
            let text = sealer.seal(&Ticket {
                step: sealed.clone(),
                ..ticket()
            });
            for (j, expected) in steps.iter().enumerate() {
                let opened = sealer.open(&text, 999, expected);
                match i == j {
                    true => assert_eq!(opened.map(|t| t.step), Ok(sealed.clone())),
                    false => assert_eq!(opened, Err(TicketError::WrongStep), "{i} as {j}"),
                }
            }
        }
        // Another key, one changed character, or nonsense: invalid.
        assert_eq!(
            Sealer::new(&[2; 32]).open(&text, 0, &steps[1]),
            Err(TicketError::Invalid)
        );
        let mut altered = text.clone().into_bytes();
        altered[20] = if altered[20] == b'A' { b'B' } else { b'A' };
        let altered = String::from_utf8(altered).unwrap();
        assert_eq!(
            sealer.open(&altered, 0, &steps[1]),
            Err(TicketError::Invalid)
        );
        for junk in ["", "abc", "!!!", &"A".repeat(5000)] {
            assert_eq!(
                sealer.open(junk, 0, &Step::Link),
                Err(TicketError::Invalid),
                "{junk}"
            );
        }
    }
}
