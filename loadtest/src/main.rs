//! `loadtest`: the bundled load tester. Its scenarios arrive with their own issue;
//! for now it only explains itself so the workspace builds and the binary exists.

fn main() {
    eprintln!("loadtest: scenarios are not implemented yet (see the load-testing issue)");
    std::process::exit(2);
}
