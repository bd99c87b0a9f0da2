//! The few Linux knobs the standard library does not expose (socket options,
//! huge pages, the open-file limit), and the only module that calls `libc`.
//! Each is best effort: on another OS, or a kernel without the knob, it does
//! nothing and the program works as before (only slower or larger).

/// Lets the kernel choose a socket's source port at `connect` (checking the
/// whole 4-tuple) rather than at `bind`: binding port 0 walks every port already
/// bound, which makes opening tens of thousands of sockets quadratic (most
/// of the CPU went to `inet_csk_get_port`; see BENCHMARKS.md).
#[cfg(target_os = "linux")]
pub fn defer_port_choice(socket: &tokio::net::TcpSocket) {
    if !set_int_option(socket, libc::IPPROTO_IP, libc::IP_BIND_ADDRESS_NO_PORT, 1) {
        tracing::debug!("IP_BIND_ADDRESS_NO_PORT is not supported");
    }
}

#[cfg(not(target_os = "linux"))]
pub fn defer_port_choice(_socket: &tokio::net::TcpSocket) {}

/// Asks the kernel to hand this listener's connections to `accept` only once
/// their first bytes have arrived (`TCP_DEFER_ACCEPT`), for up to `wait`
/// (whole seconds): a new connection's first read then finds its request
/// instead of parking the connection's task until the request comes (one
/// read, one wake-up less per connection). A client that sends nothing is
/// accepted after `wait` all the same, and the header timeout takes over.
#[cfg(target_os = "linux")]
pub fn accept_when_data_arrives(socket: &tokio::net::TcpSocket, wait: std::time::Duration) {
    let seconds = libc::c_int::try_from(wait.as_secs()).unwrap_or(libc::c_int::MAX);
    if !set_int_option(socket, libc::IPPROTO_TCP, libc::TCP_DEFER_ACCEPT, seconds) {
        tracing::debug!("TCP_DEFER_ACCEPT is not supported");
    }
}

#[cfg(not(target_os = "linux"))]
pub fn accept_when_data_arrives(_socket: &tokio::net::TcpSocket, _wait: std::time::Duration) {}

/// Turns Nagle's algorithm off on an accepted socket, unless it came from a
/// listener that had it off already: Linux copies a listening socket's
/// `TCP_NODELAY` into every connection it accepts, so there it costs nothing.
pub fn set_nodelay_unless_inherited(stream: &tokio::net::TcpStream) {
    if !cfg!(target_os = "linux") {
        let _ = stream.set_nodelay(true);
    }
}

/// `setsockopt` with an integer value; false when the kernel refused it.
#[cfg(target_os = "linux")]
fn set_int_option(
    socket: &tokio::net::TcpSocket,
    level: libc::c_int,
    name: libc::c_int,
    value: libc::c_int,
) -> bool {
    use std::os::fd::AsRawFd;
    // SAFETY: the descriptor is open (owned by `socket`) and the option value is a
    // c_int with its exact size; setsockopt only reads it.
    unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            level,
            name,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        ) == 0
    }
}

/// Asks the kernel not to back this process's memory with transparent huge
/// pages. The allocator asks for them, and with them every idle socket's
/// buffers are resident at their full capacity, and every connect costs the
/// kernel more zeroing (figures in BENCHMARKS.md). Call it first thing,
/// before the allocator has mapped much.
#[cfg(target_os = "linux")]
pub fn decline_huge_pages() {
    // SAFETY: PR_SET_THP_DISABLE takes an integer flag and no pointers; it only
    // sets a flag on this process.
    let failed = unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) } != 0;
    if failed {
        eprintln!("note: could not disable transparent huge pages (PR_SET_THP_DISABLE)");
    }
}

#[cfg(not(target_os = "linux"))]
pub fn decline_huge_pages() {}

/// Raises this process's soft limit on open files to its hard limit, the most
/// it may take unprivileged: each connection holds a descriptor, and many
/// systems start processes at a soft limit of 1,024. Call it before the
/// server starts; [`open_files_limit`] reads what is then in force.
#[cfg(unix)]
pub fn raise_open_files_limit() {
    let Some(limit) = current_open_files_limit() else {
        return;
    };
    if limit.rlim_cur < limit.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: limit.rlim_max,
            rlim_max: limit.rlim_max,
        };
        // SAFETY: setrlimit only reads the rlimit we pass; a refusal (macOS
        // takes no unlimited soft limit) leaves the limit as it was.
        unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) };
    }
}

#[cfg(not(unix))]
pub fn raise_open_files_limit() {}

/// The most descriptors this process may hold open now (the soft
/// `RLIMIT_NOFILE`; `u64::MAX` when unlimited); `None` where it cannot be
/// read.
#[cfg(unix)]
#[allow(clippy::unnecessary_cast)] // `rlim_t` is 64 bits on Linux, not on every Unix
pub fn open_files_limit() -> Option<u64> {
    current_open_files_limit().map(|limit| limit.rlim_cur as u64)
}

#[cfg(not(unix))]
pub fn open_files_limit() -> Option<u64> {
    None
}

#[cfg(unix)]
fn current_open_files_limit() -> Option<libc::rlimit> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit into the struct we own.
    let read = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0;
    read.then_some(limit)
}
