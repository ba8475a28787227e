//! A tiny given / when / then harness for aggregate tests:
//! `given(decide, evolve, &events).when(command).then(expected)` or `.then_error(err)`.

use std::fmt::Debug;

/// An aggregate's state rebuilt from past events, waiting for a command.
pub(crate) struct Given<S, C, E, Err> {
    state: S,
    decide: fn(&S, C) -> Result<Vec<E>, Err>,
}

/// The outcome of a command, waiting to be checked.
pub(crate) struct Then<E, Err>(Result<Vec<E>, Err>);

/// Starts a test from the default state with `events` already applied.
pub(crate) fn given<S: Default, C, E, Err>(
    decide: fn(&S, C) -> Result<Vec<E>, Err>,
    evolve: fn(S, &E) -> S,
    events: &[E],
) -> Given<S, C, E, Err> {
    let state = events.iter().fold(S::default(), evolve);
    Given { state, decide }
}

impl<S, C, E, Err> Given<S, C, E, Err> {
    /// Decides `command` against the given state.
    pub(crate) fn when(self, command: C) -> Then<E, Err> {
        Then((self.decide)(&self.state, command))
    }
}

impl<E: Debug + PartialEq, Err: Debug + PartialEq> Then<E, Err> {
    /// Asserts the command was accepted and produced exactly `expected`.
    #[track_caller]
    pub(crate) fn then(self, expected: Vec<E>) {
        assert_eq!(self.0, Ok(expected));
    }

    /// Asserts the command was refused with `expected`.
    #[track_caller]
    pub(crate) fn then_error(self, expected: Err) {
        assert_eq!(self.0, Err(expected));
    }
}
