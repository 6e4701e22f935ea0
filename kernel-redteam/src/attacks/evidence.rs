//! Evidence tampering by the agent.

use super::*;

/// Evidence tampering by the agent: direct writes, truncation, renames and
/// deletion of the evidence and its checkpoints, and the same through the
/// kernel.
pub(crate) fn evidence(plan: &Plan, rng: &mut SplitMix64, count: usize, rep: &mut Reporter) {
    let route = Route::join(plan).ok();
    let ev = plan.evidence.clone();
    let cosig = format!("{ev}.cosignatures");
    for i in 0..count {
        let mut a = attempt(String::new());
        match i % 6 {
            0 => {
                let len = rng.below(64) as u64;
                a.what = format!("truncate the evidence to {len} bytes");
                a.answer = format!(
                    "{:?}",
                    std::fs::OpenOptions::new()
                        .write(true)
                        .open(&ev)
                        .and_then(|f| f.set_len(len))
                );
            }
            1 => {
                a.what = "overwrite a byte in the evidence".into();
                a.answer = format!(
                    "{:?}",
                    std::fs::OpenOptions::new()
                        .write(true)
                        .open(&ev)
                        .and_then(|mut f| f.write_all(&[0xff]))
                );
            }
            2 => {
                a.what = "rename the evidence away and put a forged file in its place".into();
                a.answer = format!(
                    "{:?} {:?}",
                    std::fs::rename(&ev, format!("{}/old.log", plan.scratch)),
                    std::fs::write(&ev, b"forged")
                );
            }
            3 => {
                a.what = "delete the evidence through the kernel".into();
                a.answer = route
                    .as_ref()
                    .map_or("no kernel".into(), |r| format!("{:?}", r.delete(&ev)));
            }
            4 => {
                a.what = "append a forged record through the kernel".into();
                a.answer = route.as_ref().map_or("no kernel".into(), |r| {
                    format!("{:?}", r.append(&ev, b"forged"))
                });
            }
            _ => {
                a.what = "write a forged witness co-signature file".into();
                a.answer = format!("{:?}", std::fs::write(&cosig, b"{\"note\":\"forged\"}\n"));
                a.markers.push(cosig.clone());
            }
        }
        a.audit = true;
        rep.report(a);
    }
}
