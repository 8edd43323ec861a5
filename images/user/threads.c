/*
 * Threads: pthread_create and pthread_join (clone, futex, the cleared tid
 * word), a mutex and a condition variable under contention, thread-local
 * storage, and a return value through join.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define THREADS 8
#define ROUNDS 2000

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t turn_changed = PTHREAD_COND_INITIALIZER;
static long counter;
static int turn;
static __thread int mine;

static void *worker(void *arg)
{
    long id = (long)arg;
    mine = (int)id * 1000;
    for (int i = 0; i < ROUNDS; i++) {
        pthread_mutex_lock(&lock);
        counter++;
        pthread_mutex_unlock(&lock);
    }
    /* Take turns in order: a condition variable with every thread
     * waiting on it. */
    pthread_mutex_lock(&lock);
    while (turn != id)
        pthread_cond_wait(&turn_changed, &lock);
    turn++;
    pthread_cond_broadcast(&turn_changed);
    pthread_mutex_unlock(&lock);
    struct timespec nap = {0, 1000 * 1000};
    nanosleep(&nap, NULL);
    return (void *)(long)(mine + 1);
}

int main(void)
{
    pthread_t threads[THREADS];
    int failures = 0;
    mine = -1;
    for (long i = 0; i < THREADS; i++) {
        if (pthread_create(&threads[i], NULL, worker, (void *)i) != 0) {
            printf("FAIL: pthread_create %ld\n", i);
            return 1;
        }
    }
    for (long i = 0; i < THREADS; i++) {
        void *result;
        if (pthread_join(threads[i], &result) != 0 || (long)result != i * 1000 + 1) {
            printf("FAIL: join %ld gave %ld\n", i, (long)result);
            failures++;
        }
    }
    printf("%s: counter %ld (expected %d)\n", counter == THREADS * ROUNDS ? "ok" : "FAIL", counter,
           THREADS * ROUNDS);
    printf("%s: turns taken in order: %d\n", turn == THREADS ? "ok" : "FAIL", turn);
    printf("%s: main's TLS untouched: %d\n", mine == -1 ? "ok" : "FAIL", mine);
    failures += counter != THREADS * ROUNDS;
    failures += turn != THREADS;
    failures += mine != -1;
    if (failures) {
        printf("threads: %d checks failed\n", failures);
        return 1;
    }
    printf("threads: all checks passed\n");
    return 0;
}
