#include "daemon/control/control_server.h"

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <grpcpp/grpcpp.h>
#include <grpcpp/security/auth_metadata_processor.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"

namespace bm::daemon::control {
namespace {

absl::StatusOr<std::string> read_file(const std::string& path, const char* what) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat(what, " file ", path, " cannot be read"));
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Checks `authorization: Bearer <token>` on every call over TCP.
class TokenAuthProcessor : public grpc::AuthMetadataProcessor {
 public:
  explicit TokenAuthProcessor(std::string token) : token_(std::move(token)) {}
  bool IsBlocking() const override { return false; }
  grpc::Status Process(const InputMetadata& auth_metadata, grpc::AuthContext*, OutputMetadata*,
                       OutputMetadata*) override {
    auto it = auth_metadata.find("authorization");
    if (it == auth_metadata.end())
      return grpc::Status(grpc::StatusCode::UNAUTHENTICATED, "this daemon requires a bearer token (BMSERVER_TOKEN)");
    std::string_view value(it->second.data(), it->second.size());
    if (value != "Bearer " + token_)
      return grpc::Status(grpc::StatusCode::UNAUTHENTICATED, "the bearer token was not accepted");
    return grpc::Status::OK;
  }

 private:
  std::string token_;
};

absl::Status prepare_unix_socket(const std::string& path, bool user_mode) {
  namespace fs = std::filesystem;
  std::error_code ec;
  fs::path dir = fs::path(path).parent_path();
  if (!fs::exists(dir, ec)) {
    fs::create_directories(dir, ec);
    if (ec)
      return absl::PermissionDeniedError(
          absl::StrCat("cannot create socket directory ", dir.string(), ": ", ec.message()));
    fs::permissions(
        dir, user_mode ? fs::perms::owner_all : fs::perms::owner_all | fs::perms::group_read | fs::perms::group_exec,
        ec);
  }
  struct stat st {};
  if (lstat(path.c_str(), &st) != 0) return absl::OkStatus();
  if (!S_ISSOCK(st.st_mode))
    return absl::FailedPreconditionError(absl::StrCat(path, " exists and is not a socket; refusing to replace it"));
  if (unix_socket_answers(path))
    return absl::AlreadyExistsError(absl::StrCat("another bmserverd is already answering on ", path));
  if (unlink(path.c_str()) != 0)
    return absl::PermissionDeniedError(absl::StrCat("cannot remove stale socket ", path, ": ", std::strerror(errno)));
  return absl::OkStatus();
}

}  // namespace

bool unix_socket_answers(const std::string& path) {
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, path.c_str(), sizeof(addr.sun_path) - 1);
  bool answers = connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
  close(fd);
  return answers;
}

ControlServer::ControlServer() = default;
ControlServer::~ControlServer() {
  shutdown(0);
}

absl::Status ControlServer::start(const ControlServerOptions& options, const std::vector<grpc::Service*>& services) {
  std::shared_ptr<grpc::ServerCredentials> creds;
  if (options.address.is_tcp()) {
    absl::StatusOr<std::string> cert = read_file(options.tls_cert_file, "TLS certificate");
    if (!cert.ok()) return cert.status();
    absl::StatusOr<std::string> key = read_file(options.tls_key_file, "TLS key");
    if (!key.ok()) return key.status();
    absl::StatusOr<std::string> token = read_file(options.token_file, "token");
    if (!token.ok()) return token.status();
    std::string token_text(absl::StripAsciiWhitespace(*token));
    if (token_text.empty())
      return absl::InvalidArgumentError(absl::StrCat("token file ", options.token_file, " is empty"));
    grpc::SslServerCredentialsOptions ssl;
    ssl.pem_key_cert_pairs.push_back({*key, *cert});
    creds = grpc::SslServerCredentials(ssl);
    creds->SetAuthMetadataProcessor(std::make_shared<TokenAuthProcessor>(token_text));
  } else {
    if (absl::Status s = prepare_unix_socket(options.address.unix_path, options.user_mode); !s.ok()) return s;
    creds = grpc::InsecureServerCredentials();  // the socket's file mode is the access control
  }

  grpc::ServerBuilder builder;
  int selected_port = 0;
  builder.AddListeningPort(options.address.grpc_target(), creds, &selected_port);
  builder.SetMaxReceiveMessageSize(16 << 20);
  for (grpc::Service* service : services) builder.RegisterService(service);

  // The socket is created inside BuildAndStart; the umask makes it 0660 (0600 in user mode) from the start.
  mode_t old_mask = umask(options.user_mode ? 0177 : 0117);
  server_ = builder.BuildAndStart();
  umask(old_mask);
  if (server_ == nullptr || (options.address.is_tcp() && selected_port == 0)) {
    server_.reset();
    return absl::UnavailableError(
        absl::StrCat("cannot listen on ", options.address.grpc_target(), " (address in use, or not permitted)"));
  }
  if (!options.address.is_tcp()) {
    socket_path_ = options.address.unix_path;
    chmod(socket_path_.c_str(), options.user_mode ? 0600 : 0660);
  }
  return absl::OkStatus();
}

void ControlServer::shutdown(int grace_seconds) {
  if (server_ == nullptr) return;
  server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(grace_seconds));
  server_->Wait();
  server_.reset();
  if (!socket_path_.empty()) {
    unlink(socket_path_.c_str());
    socket_path_.clear();
  }
}

}  // namespace bm::daemon::control
