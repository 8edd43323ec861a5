/*
 * A small server on one epoll loop: `server [port]` (default 80) listens,
 * and each connection is either HTTP (it starts with "GET ") or echo
 * (anything else: every byte comes back). HTTP serves the files of the
 * root with sendfile (404 for what is missing); `GET /quit` or an echo
 * line "quit" ends the program with status 0 after answering.
 * Non-blocking sockets, accept4, epoll_ctl/epoll_wait, partial writes.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_CONN 256
#define BUF 8192

struct conn {
    int fd;
    size_t have;      /* bytes in buf */
    char buf[BUF];
    size_t out_have;  /* echo bytes waiting to go out */
    char out[BUF];
};

static struct conn *conns[MAX_CONN];
static int quitting;
static int epfd;

static void drop_conn(struct conn *c)
{
    epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    for (int i = 0; i < MAX_CONN; i++)
        if (conns[i] == c)
            conns[i] = NULL;
    free(c);
}

static int write_all(int fd, const char *p, size_t n)
{
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EAGAIN) {
            struct epoll_event ev = {0};
            (void)ev;
            continue; /* the socket is blocking for HTTP answers */
        }
        if (w <= 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* One HTTP request in c->buf: answer and close. */
static void http(struct conn *c)
{
    char path[256] = {0};
    if (sscanf(c->buf, "GET %255s", path) != 1) {
        drop_conn(c);
        return;
    }
    /* Answer with blocking writes. */
    fcntl(c->fd, F_SETFL, fcntl(c->fd, F_GETFL) & ~O_NONBLOCK);
    char head[512];
    if (strcmp(path, "/quit") == 0) {
        const char *body = "bye\n";
        int n = snprintf(head, sizeof head,
                         "HTTP/1.1 200 OK\r\nContent-Length: %zu\r\nConnection: close\r\n\r\n%s",
                         strlen(body), body);
        write_all(c->fd, head, (size_t)n);
        quitting = 1;
        drop_conn(c);
        return;
    }
    int file = open(path, O_RDONLY);
    struct stat st;
    if (file < 0 || fstat(file, &st) < 0 || !S_ISREG(st.st_mode)) {
        const char *body = "not found\n";
        int n = snprintf(head, sizeof head,
                         "HTTP/1.1 404 Not Found\r\nContent-Length: %zu\r\nConnection: close\r\n\r\n%s",
                         strlen(body), body);
        write_all(c->fd, head, (size_t)n);
    } else {
        int n = snprintf(head, sizeof head,
                         "HTTP/1.1 200 OK\r\nContent-Length: %lld\r\nConnection: close\r\n\r\n",
                         (long long)st.st_size);
        write_all(c->fd, head, (size_t)n);
        off_t offset = 0;
        while (offset < st.st_size)
            if (sendfile(c->fd, file, &offset, (size_t)(st.st_size - offset)) <= 0)
                break;
    }
    if (file >= 0)
        close(file);
    shutdown(c->fd, SHUT_WR);
    drop_conn(c);
}

static void readable(struct conn *c)
{
    for (;;) {
        ssize_t n = read(c->fd, c->buf + c->have, BUF - 1 - c->have);
        if (n == 0) {
            drop_conn(c);
            return;
        }
        if (n < 0) {
            if (errno != EAGAIN)
                drop_conn(c);
            return;
        }
        c->have += (size_t)n;
        c->buf[c->have] = 0;
        if (strncmp(c->buf, "GET ", c->have < 4 ? c->have : 4) == 0) {
            if (c->have >= 4 && strstr(c->buf, "\r\n\r\n")) {
                http(c);
                return;
            }
            if (c->have < BUF - 1)
                continue;
            drop_conn(c);
            return;
        }
        /* Echo: queue what came, send what the socket takes. */
        if (strstr(c->buf, "quit\n"))
            quitting = 1;
        size_t room = BUF - c->out_have;
        size_t take = c->have < room ? c->have : room;
        memcpy(c->out + c->out_have, c->buf, take);
        c->out_have += take;
        memmove(c->buf, c->buf + take, c->have - take);
        c->have -= take;
        while (c->out_have) {
            ssize_t w = write(c->fd, c->out, c->out_have);
            if (w < 0) {
                if (errno == EAGAIN) {
                    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.ptr = c};
                    epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev);
                    break;
                }
                drop_conn(c);
                return;
            }
            memmove(c->out, c->out + w, c->out_have - (size_t)w);
            c->out_have -= (size_t)w;
        }
    }
}

int main(int argc, char **argv)
{
    int port = argc > 1 ? atoi(argv[1]) : 80;
    int listener = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    if (listener < 0 || bind(listener, (struct sockaddr *)&addr, sizeof addr) < 0 ||
        listen(listener, 128) < 0) {
        perror("server: listen");
        return 2;
    }
    epfd = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
    epoll_ctl(epfd, EPOLL_CTL_ADD, listener, &ev);
    printf("server: listening on port %d\n", port);
    fflush(stdout);
    long served = 0;
    while (!quitting) {
        struct epoll_event events[64];
        int n = epoll_wait(epfd, events, 64, 1000);
        for (int i = 0; i < n; i++) {
            struct conn *c = events[i].data.ptr;
            if (c == NULL) {
                for (;;) {
                    struct sockaddr_in peer;
                    socklen_t len = sizeof peer;
                    int fd = accept4(listener, (struct sockaddr *)&peer, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
                    if (fd < 0)
                        break;
                    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                    int slot = -1;
                    for (int k = 0; k < MAX_CONN; k++)
                        if (!conns[k]) {
                            slot = k;
                            break;
                        }
                    if (slot < 0) {
                        close(fd);
                        continue;
                    }
                    struct conn *nc = calloc(1, sizeof *nc);
                    nc->fd = fd;
                    conns[slot] = nc;
                    struct epoll_event cev = {.events = EPOLLIN | EPOLLRDHUP, .data.ptr = nc};
                    epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &cev);
                    served++;
                }
            } else if (events[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR | EPOLLRDHUP)) {
                readable(c);
            } else if (events[i].events & EPOLLOUT) {
                while (c->out_have) {
                    ssize_t w = write(c->fd, c->out, c->out_have);
                    if (w <= 0)
                        break;
                    memmove(c->out, c->out + w, c->out_have - (size_t)w);
                    c->out_have -= (size_t)w;
                }
                if (!c->out_have) {
                    struct epoll_event cev = {.events = EPOLLIN | EPOLLRDHUP, .data.ptr = c};
                    epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &cev);
                }
            }
        }
    }
    printf("server: %ld connections served; quitting\n", served);
    return 0;
}
