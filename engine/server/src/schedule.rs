//! Schedules: each scheduled action fires once per cron tick in its time
//! zone. The store records the last tick fired, so a restart never fires a
//! tick twice; of the ticks missed while tale was down, only the latest is
//! fired (once, at start), the earlier ones are skipped.

use std::sync::Arc;

use chrono::TimeZone;
use tale_engine::runtime::build::BuiltStory;
use tale_engine::runtime::call::Library;
use tale_engine::runtime::durable::Durable;
use tale_engine::values;

/// Starts a task per scheduled action; abort them to stop.
pub(crate) fn spawn_all(durable: &Arc<Durable>, library: &Library) -> Vec<tokio::task::JoinHandle<()>> {
    let mut tasks = Vec::new();
    let mut stories: Vec<&Arc<BuiltStory>> = library.values().collect();
    stories.sort_by(|a, b| a.id.cmp(&b.id));
    for story in stories {
        for (i, action) in story.actions.iter().enumerate() {
            let Some(schedule) = &action.schedule else { continue };
            if action.disabled {
                continue;
            }
            let (cron, tz) = match (values::cron(&schedule.cron), values::timezone(&schedule.timezone)) {
                (Ok(c), Ok(t)) => (c, t),
                (Err(e), _) | (_, Err(e)) => {
                    tracing::error!(story = %story.id, action = %action.slug, "schedule not started: {e}");
                    continue;
                }
            };
            tasks.push(tokio::spawn(run(durable.clone(), story.clone(), i, cron, tz)));
        }
    }
    tasks
}

fn next_tick(cron: &croner::Cron, tz: chrono_tz::Tz, after_ms: i64) -> Option<i64> {
    let after = tz.timestamp_millis_opt(after_ms).single()?;
    cron.find_next_occurrence(&after, false)
        .ok()
        .map(|t| t.timestamp_millis())
}

fn previous_tick(cron: &croner::Cron, tz: chrono_tz::Tz, before_ms: i64) -> Option<i64> {
    let before = tz.timestamp_millis_opt(before_ms).single()?;
    cron.find_previous_occurrence(&before, true)
        .ok()
        .map(|t| t.timestamp_millis())
}

async fn run(durable: Arc<Durable>, story: Arc<BuiltStory>, action: usize, cron: croner::Cron, tz: chrono_tz::Tz) {
    let clock = durable.loaded().runtime.clock.clone();
    let slug = story.actions[action].slug.clone();
    match durable.last_tick(&story, action).await {
        Ok(Some(last)) => {
            if let Some(missed) = previous_tick(&cron, tz, clock.now_ms()).filter(|t| *t > last) {
                tracing::info!(story = %story.id, action = %slug, "firing the latest tick missed while down");
                fire(&durable, &story, action, missed).await;
            }
        }
        Ok(None) => {}
        Err(e) => tracing::error!(story = %story.id, action = %slug, "cannot read the schedule's last tick: {e}"),
    }
    loop {
        let Some(next) = next_tick(&cron, tz, clock.now_ms()) else {
            tracing::warn!(story = %story.id, action = %slug, "the schedule has no next tick");
            return;
        };
        clock.sleep_until(next).await;
        fire(&durable, &story, action, next).await;
    }
}

async fn fire(durable: &Arc<Durable>, story: &Arc<BuiltStory>, action: usize, tick: i64) {
    let slug = &story.actions[action].slug;
    match durable.fire(story, action, tick).await {
        Ok(true) => tracing::debug!(story = %story.id, action = %slug, tick, "schedule fired"),
        Ok(false) => tracing::debug!(story = %story.id, action = %slug, tick, "tick already fired"),
        Err(e) => tracing::error!(story = %story.id, action = %slug, tick, "schedule tick not fired: {e}"),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn ticks_follow_the_time_zone() {
        let cron = tale_engine::values::cron("0 9 * * *").expect("cron");
        let tz: chrono_tz::Tz = "Europe/Paris".parse().expect("tz");
        // 2026-01-01T00:00:00Z → 09:00 Paris is 08:00 UTC in winter.
        let next = super::next_tick(&cron, tz, 1_767_225_600_000).expect("next");
        assert_eq!(next, 1_767_225_600_000 + 8 * 3_600_000);
        let prev = super::previous_tick(&cron, tz, next + 1).expect("previous");
        assert_eq!(prev, next);
    }
}
