use super::*;

fn facts(op_date: i64) -> DeviceFacts<'static> {
    DeviceFacts {
        op_date_unix: Some(op_date),
        first_seen_unix: 5,
        op_type: "added",
        profile_status: "empty",
        deleted: false,
    }
}

#[test]
fn entries_move_between_segments_and_segments_empty() {
    let mut ix = NameIndex::default();
    ix.add_device_segment(0, 2);
    ix.set_device("A", Loc { seg: 0, slot: 0 }, &facts(10));
    ix.set_device("B", Loc { seg: 0, slot: 1 }, &facts(10));
    assert_eq!(ix.devices.live(0), 2);
    ix.add_device_segment(1, 1);
    ix.set_device("A", Loc { seg: 1, slot: 0 }, &facts(20));
    assert_eq!((ix.devices.live(0), ix.devices.len(0)), (1, 2));
    assert_eq!(ix.devices.sparse().collect::<Vec<_>>(), [0, 1], "small");
    let a = ix.device("A").expect("A");
    assert_eq!((a.loc.seg, a.op_date_unix), (1, Some(20)));
    ix.add_device_segment(2, 1);
    ix.set_device("B", Loc { seg: 2, slot: 0 }, &facts(20));
    assert!(!ix.devices.sizes.contains_key(&0), "an empty segment goes");
    assert_eq!(ix.devices.next, 3);
}

#[test]
fn long_serials_and_due_order() {
    let mut ix = NameIndex::default();
    let long = "X".repeat(40);
    ix.add_assignment_segment(0, 3);
    let due = |t| AssignFacts {
        result: 0,
        next_retry_unix: Some(t),
        gave_up: false,
    };
    ix.set_assignment(&long, Loc { seg: 0, slot: 0 }, due(30));
    ix.set_assignment("B", Loc { seg: 0, slot: 1 }, due(10));
    ix.set_assignment("C", Loc { seg: 0, slot: 2 }, due(10));
    let due_at = |ix: &NameIndex, t, limit| -> Vec<String> {
        ix.due_where(t, limit, |_| true)
            .into_iter()
            .map(|(s, _)| s)
            .collect()
    };
    assert_eq!(due_at(&ix, 30, 10), ["B", "C", long.as_str()]);
    assert_eq!(ix.next_due(), Some(10));
    assert_eq!(due_at(&ix, 20, 1).len(), 1);
    // Serials passed over do not use up the limit.
    let skipped: Vec<String> = ix
        .due_where(30, 1, |s| s != "B")
        .into_iter()
        .map(|(s, _)| s)
        .collect();
    assert_eq!(skipped, ["C"]);
    ix.add_assignment_segment(1, 1);
    ix.set_assignment(
        "B",
        Loc { seg: 1, slot: 0 },
        AssignFacts {
            result: 1,
            next_retry_unix: None,
            gave_up: false,
        },
    );
    assert_eq!(due_at(&ix, 30, 10), ["C", long.as_str()]);
    assert_eq!(ix.next_due(), Some(10), "C is still due at 10");
    ix.add_assignment_segment(2, 2);
    let done = AssignFacts {
        result: 1,
        next_retry_unix: None,
        gave_up: false,
    };
    ix.set_assignment("C", Loc { seg: 2, slot: 0 }, done);
    assert_eq!(ix.next_due(), Some(30));
    ix.set_assignment(&long, Loc { seg: 2, slot: 1 }, done);
    assert_eq!(ix.next_due(), None);
    assert_eq!(ix.assignment(&long), Some(Loc { seg: 2, slot: 1 }));
    assert_eq!(ix.assignment("nope"), None);
}
