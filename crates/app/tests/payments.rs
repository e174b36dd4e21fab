//! Payments above `ledger.payment_confirm_above_fen` take two persons: recorded by one finance
//! user (nothing booked), confirmed by another (the journal written, what is owed re-checked)
//! or withdrawn; idempotent by reference; sealed in the audit log. Every test runs on SQLite
//! and on PostgreSQL.

use suanli_app::audit::Actor;
use suanli_app::ledger::{self, Recorded};
use suanli_app::settlement::{self as settle, SettleError};
use suanli_app::users::{self, CreateUser};
use suanli_domain::Registry;
use suanli_domain::money::Fen;
use suanli_domain::usage::{Period, UsageRecord, validate};
use suanli_store::{Candidate, Principal, RegistryNames, Store};

/// One programme paying its beneficiary e1 half of what it buys from dc-a.
const REGISTRY: &str = r#"
[[programme]]
id = "city-2025"
funder = "municipal"
year = 2025
beneficiary_kinds = ["enterprise"]
payee = "beneficiary"
rates = [ { category = "compute", ratio = "0.50" } ]
[[provider]]
id = "dc-a"
[[sku]]
id = "gpu"
provider = "dc-a"
category = "compute"
chip_origin = "domestic"
unit = "gpu_hour"
[[beneficiary]]
id = "e1"
kind = "enterprise"
[[grant]]
beneficiary = "e1"
programme = "city-2025"
"#;

/// Payments of more than 100.00 CNY need a second person.
const ABOVE: Option<Fen> = Some(Fen(10_000));

struct World {
    store: Box<dyn Store>,
    registry: Registry,
    finance_1: Actor,
    finance_2: Actor,
    /// Finance 1 again, under another request (as through a second token or session).
    finance_1_again: Actor,
    _db: suanli_testkit::TestDb,
}

fn person(store: &mut dyn Store, login: &str) -> suanli_store::users::UserRow {
    users::create(
        store,
        &Actor::operator(),
        &CreateUser {
            login: login.to_owned(),
            name: format!("财务 {login}"),
            principal: Principal::Finance,
            email: None,
            service: false,
            password: None,
        },
    )
    .expect("user created")
}

fn actor(user: &suanli_store::users::UserRow) -> Actor {
    Actor::of_user(
        &Principal::Finance,
        &user.user_ref(),
        suanli_app::audit::new_request_id(),
    )
}

impl World {
    /// A store with the registry, usage of e1 worth `march_fen` in March 2025, and March
    /// settled and posted: e1 is owed half of it.
    fn new(db: suanli_testkit::TestDb, march_fen: i64) -> World {
        let mut store = suanli_store::open(&db.url).expect("store opens");
        let (registry, _) = Registry::from_toml("test.toml", REGISTRY).expect("registry");
        store
            .registry_insert(
                &registry.content_hash,
                REGISTRY,
                &RegistryNames::of(&registry),
                chrono::Utc::now(),
            )
            .expect("registry stored");
        let f1 = person(store.as_mut(), "finance1");
        let f2 = person(store.as_mut(), "finance2");
        let mut w = World {
            store,
            registry,
            finance_1: actor(&f1),
            finance_2: actor(&f2),
            finance_1_again: actor(&f1),
            _db: db,
        };
        w.ingest("m1", "2025-03-10T00:00:00+08:00", march_fen);
        w.settle("2025-03");
        w
    }

    fn ingest(&mut self, id: &str, start: &str, fen: i64) {
        let start = chrono::DateTime::parse_from_rfc3339(start).expect("time");
        let record = UsageRecord {
            provider: "dc-a".into(),
            record_id: id.into(),
            beneficiary: "e1".into(),
            sku: "gpu".into(),
            start,
            end: start + chrono::Duration::hours(1),
            quantity: "1".parse().expect("decimal"),
            amount: Fen(fen),
        };
        let class = validate(&self.registry, &record).expect("record is valid");
        self.store
            .ingest(&[Candidate {
                period: Period::of_instant(record.end),
                class,
                capacity: None,
                registry_version: 1,
                record,
            }])
            .expect("ingest");
    }

    fn settle(&mut self, period: &str) {
        let run = settle::create_run(&mut *self.store, "city-2025", period, &self.finance_1)
            .expect("run created");
        settle::approve_run(&mut *self.store, run.run.run_id, &self.finance_2).expect("approve");
        settle::post_run(&mut *self.store, run.run.run_id, &self.finance_2).expect("post");
    }

    fn owed(&mut self) -> (Fen, Fen) {
        let p = ledger::payee(&mut *self.store, "e1").expect("position");
        assert_eq!(p.len(), 1, "{p:?}");
        (p[0].outstanding, p[0].paid_out)
    }

    fn record(&mut self, amount: i64, reference: &str, who: &str) -> Result<Recorded, SettleError> {
        let who = match who {
            "f1" => self.finance_1.clone(),
            _ => self.finance_2.clone(),
        };
        ledger::record_payment(
            &mut *self.store,
            None,
            "e1",
            Fen(amount),
            reference,
            &who,
            ABOVE,
        )
    }

    fn payment_journals(&mut self) -> usize {
        ledger::journals(&mut *self.store)
            .expect("journals")
            .iter()
            .filter(|j| j.kind == "payment")
            .count()
    }

    fn audit_actions(&mut self) -> Vec<(String, String, String)> {
        let mut out = Vec::new();
        self.store
            .transaction(&mut |tx| {
                out = suanli_store::audit::entries(tx)?
                    .into_iter()
                    .map(|e| (e.action, e.subject, e.actor))
                    .collect();
                Ok(())
            })
            .expect("audit read");
        out
    }

    fn verify(&mut self) -> Result<suanli_app::seal::Sealed, String> {
        let mut out = None;
        self.store
            .transaction(&mut |tx| {
                let entries = suanli_store::audit::entries(tx)?;
                out = Some(suanli_app::seal::verify(tx, &entries).map_err(|e| e.to_string()));
                Ok(())
            })
            .expect("verify read");
        out.expect("verified")
    }
}

fn awaiting(r: Recorded) -> (suanli_store::payments::PaymentRow, bool) {
    match r {
        Recorded::Awaiting {
            payment, duplicate, ..
        } => (payment, duplicate),
        other => panic!("expected a payment awaiting confirmation, got {other:?}"),
    }
}

fn on_both(test: fn(suanli_testkit::TestDb)) {
    test(suanli_testkit::sqlite("payments"));
    if let Some(db) = suanli_testkit::postgres("payments") {
        test(db);
    }
}

// A payment above the amount is only recorded (no journal, payable unchanged, audited with
// the recorder's user id); its recorder cannot confirm it, not under another request either;
// another finance user's confirmation writes the journal, and `audit verify` accounts for it.
#[test]
fn a_large_payment_is_booked_by_a_second_person() {
    on_both(|db| {
        let mut w = World::new(db, 100_000);
        assert_eq!(w.owed(), (Fen(50_000), Fen(0)), "e1 is owed 500.00");
        let (payment, duplicate) = awaiting(w.record(30_000, "BANK-1", "f1").expect("recorded"));
        assert!(!duplicate);
        assert_eq!(payment.status, "awaiting");
        assert_eq!(payment.recorded_by, "财务 finance1 (finance1)");
        assert_eq!(payment.recorded_by_user_id, w.finance_1.user_id());
        assert_eq!(payment.journal_id, None);
        assert_eq!(w.owed(), (Fen(50_000), Fen(0)), "nothing booked yet");
        assert_eq!(w.payment_journals(), 0);
        let recorded = w
            .audit_actions()
            .into_iter()
            .find(|(action, _, _)| action == "payment.record")
            .expect("the record is audited");
        assert_eq!(recorded.1, format!("payment:{}", payment.payment_id));
        assert!(
            recorded
                .2
                .starts_with(&format!("user:{} ", w.finance_1.user_id().expect("a user"))),
            "{recorded:?}"
        );
        let listed = ledger::list_payments(&mut *w.store, true).expect("list");
        assert_eq!(listed, vec![payment.clone()]);

        for who in [w.finance_1.clone(), w.finance_1_again.clone()] {
            let refused = ledger::confirm_payment(&mut *w.store, payment.payment_id, &who)
                .expect_err("the recorder cannot confirm");
            assert!(
                matches!(&refused, SettleError::PermissionDenied(m) if m.contains("four eyes") && m.contains("finance1")),
                "{refused}"
            );
        }
        assert_eq!(w.owed(), (Fen(50_000), Fen(0)), "a refusal changes nothing");

        let f2 = w.finance_2.clone();
        let confirmed =
            ledger::confirm_payment(&mut *w.store, payment.payment_id, &f2).expect("confirmed");
        assert!(!confirmed.unchanged);
        assert_eq!(confirmed.payment.status, "confirmed");
        assert_eq!(confirmed.payment.confirmed_by_user_id, f2.user_id());
        assert_eq!(confirmed.outstanding, Fen(20_000));
        assert_eq!(w.owed(), (Fen(20_000), Fen(30_000)), "the payable moved");
        let journals = ledger::journals(&mut *w.store).expect("journals");
        let journal = journals
            .iter()
            .find(|j| Some(j.journal_id) == confirmed.payment.journal_id)
            .expect("the payment's journal");
        assert_eq!(journal.kind, "payment");
        assert_eq!(journal.reference, "BANK-1");
        assert_eq!(journal.memo, "payment to e1 by city-2025");
        assert_eq!(journal.created_by, "财务 finance2 (finance2)");
        let again = ledger::confirm_payment(&mut *w.store, payment.payment_id, &f2)
            .expect("confirming twice");
        assert!(again.unchanged);
        assert_eq!(w.payment_journals(), 1, "booked once");
        assert!(
            ledger::list_payments(&mut *w.store, true)
                .expect("list")
                .is_empty()
        );
        let sealed = w.verify().expect("the audit log accounts for the payment");
        assert_eq!((sealed.payments, sealed.confirmed_payments), (1, 1));
    });
}

// At or below the amount a payment is booked at once, as without the setting; so is every
// payment without it.
#[test]
fn a_payment_at_or_below_the_amount_is_booked_at_once() {
    on_both(|db| {
        let mut w = World::new(db, 100_000);
        match w.record(10_000, "SMALL-1", "f1").expect("booked") {
            Recorded::Booked {
                duplicate: false,
                outstanding,
                payment: None,
                ..
            } => assert_eq!(outstanding, Fen(40_000)),
            other => panic!("booked at once: {other:?}"),
        }
        let f1 = w.finance_1.clone();
        let booked =
            ledger::record_payment(&mut *w.store, None, "e1", Fen(20_000), "BIG-1", &f1, None)
                .expect("without the setting");
        assert!(matches!(booked, Recorded::Booked { .. }), "{booked:?}");
        assert_eq!(w.owed(), (Fen(20_000), Fen(30_000)));
        assert!(
            ledger::list_payments(&mut *w.store, false)
                .expect("list")
                .is_empty()
        );
    });
}

// The same reference with the same content is the same payment, awaiting or confirmed; with
// other content a conflict naming the payment; a withdrawn payment frees its reference.
#[test]
fn recording_is_idempotent_by_reference() {
    on_both(|db| {
        let mut w = World::new(db, 100_000);
        let (first, _) = awaiting(w.record(30_000, "BANK-1", "f1").expect("recorded"));
        let (again, duplicate) = awaiting(w.record(30_000, "BANK-1", "f2").expect("retried"));
        assert!(duplicate);
        assert_eq!(again.payment_id, first.payment_id);
        let conflict = w.record(31_000, "BANK-1", "f1").expect_err("other content");
        assert!(
            matches!(&conflict, SettleError::AlreadyExists(m) if m.contains(&format!("payment {}", first.payment_id))),
            "{conflict}"
        );
        // A single-step payment's reference is taken too.
        w.record(5_000, "SMALL-1", "f1").expect("booked at once");
        assert!(matches!(
            w.record(30_000, "SMALL-1", "f1"),
            Err(SettleError::AlreadyExists(_))
        ));
        let f2 = w.finance_2.clone();
        let confirmed =
            ledger::confirm_payment(&mut *w.store, first.payment_id, &f2).expect("confirmed");
        match w
            .record(30_000, "BANK-1", "f1")
            .expect("retried after confirmation")
        {
            Recorded::Booked {
                journal_id,
                duplicate: true,
                payment: Some(p),
                ..
            } => {
                assert_eq!(Some(journal_id), confirmed.payment.journal_id);
                assert_eq!(p.payment_id, first.payment_id);
            }
            other => panic!("the confirmed payment: {other:?}"),
        }
        let (second, _) = awaiting(w.record(12_000, "BANK-2", "f1").expect("recorded"));
        let withdrawn =
            ledger::withdraw_payment(&mut *w.store, second.payment_id, &w.finance_1.clone())
                .expect("the recorder withdraws");
        assert_eq!(withdrawn.payment.status, "withdrawn");
        let (third, duplicate) = awaiting(w.record(12_000, "BANK-2", "f1").expect("recorded"));
        assert!(!duplicate, "the withdrawn payment freed its reference");
        assert_ne!(third.payment_id, second.payment_id);
        assert_eq!(w.payment_journals(), 2);
    });
}

// Awaiting payments hold their amounts: a new payment may not exceed what is owed less them.
// A confirmation re-checks what is owed then: after a claw-back it is refused and nothing is
// booked, and the payment can be withdrawn.
#[test]
fn amounts_are_checked_at_record_and_at_confirmation() {
    on_both(|db| {
        let mut w = World::new(db, 100_000);
        let (first, _) = awaiting(w.record(40_000, "BANK-1", "f1").expect("recorded"));
        let refused = w
            .record(15_000, "BANK-2", "f2")
            .expect_err("over what is left");
        assert!(
            matches!(&refused, SettleError::FailedPrecondition(m)
                if m.contains("exceeds the 500.00 owed") && m.contains("less 400.00 awaiting confirmation")
                    && m.contains(&format!("payment {}", first.payment_id))),
            "{refused}"
        );
        let small = w
            .record(10_000, "SMALL-1", "f2")
            .expect("what is left fits");
        assert!(matches!(small, Recorded::Booked { .. }), "{small:?}");
        assert_eq!(w.owed(), (Fen(40_000), Fen(10_000)));

        // March's record is voided and April claws its subsidy back: e1 owes 100.00.
        w.store
            .void("dc-a", "m1", "billed twice", chrono::Utc::now())
            .expect("void");
        w.settle("2025-04");
        assert_eq!(w.owed(), (Fen(-10_000), Fen(10_000)));
        let f2 = w.finance_2.clone();
        let refused = ledger::confirm_payment(&mut *w.store, first.payment_id, &f2)
            .expect_err("no longer owed");
        assert!(
            matches!(&refused, SettleError::FailedPrecondition(m) if m.contains("now owed") && m.contains("withdraw it")),
            "{refused}"
        );
        assert_eq!(w.payment_journals(), 1, "nothing booked");
        let withdrawn = ledger::withdraw_payment(&mut *w.store, first.payment_id, &f2)
            .expect("another finance user withdraws");
        assert_eq!(
            withdrawn.payment.withdrawn_by.as_deref(),
            Some("财务 finance2 (finance2)")
        );
        assert!(
            ledger::withdraw_payment(&mut *w.store, first.payment_id, &f2)
                .expect("twice")
                .unchanged
        );
        assert!(matches!(
            ledger::confirm_payment(&mut *w.store, first.payment_id, &f2),
            Err(SettleError::FailedPrecondition(_))
        ));
        assert!(matches!(
            ledger::confirm_payment(&mut *w.store, 999, &f2),
            Err(SettleError::NotFound(_))
        ));
        assert!(w.verify().is_ok());
    });
}

// A confirmed payment stays booked: it cannot be withdrawn. An edit of who recorded it (made
// directly in the database, to fake four eyes) is found by `audit verify`.
#[test]
fn a_confirmed_payment_is_sealed() {
    on_both(|db| {
        let mut w = World::new(db, 100_000);
        let (p, _) = awaiting(w.record(30_000, "BANK-1", "f1").expect("recorded"));
        let f2 = w.finance_2.clone();
        ledger::confirm_payment(&mut *w.store, p.payment_id, &f2).expect("confirmed");
        let refused =
            ledger::withdraw_payment(&mut *w.store, p.payment_id, &f2).expect_err("booked");
        assert!(
            matches!(&refused, SettleError::FailedPrecondition(m) if m.contains("not withdrawn")),
            "{refused}"
        );
        assert!(w.verify().is_ok());
        w.store
            .transaction(&mut |tx| {
                tx.exec(
                    "UPDATE payments SET recorded_by = 'someone (someone)', recorded_by_user_id = 999",
                    &[],
                )?;
                Ok(())
            })
            .expect("tampered");
        let broken = w.verify().expect_err("the edit is found");
        assert!(
            broken.contains(&format!("payment {} differs", p.payment_id)),
            "{broken}"
        );
    });
}
