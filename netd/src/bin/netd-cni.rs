//! `netd-cni`: netd's CNI plugin (installed as `/opt/cni/bin/netd`); see
//! `netd::cni`.

fn main() -> std::process::ExitCode {
    netd::cni::main()
}
